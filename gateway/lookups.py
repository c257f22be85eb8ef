"""Answers every message asks for, kept a few seconds and dropped by the writes that change them.

Each submission asks the database the same questions: which addresses the sender
owns and whether it always encrypts, which recipient domains an admin requires
encryption for, the admin policy, where a recipient's mail goes, whether an
address has an autoresponder on, and which key is an address's current one. The
answers change only when someone edits them, so a process keeps each for
`[database] lookup_cache_seconds`:

- a write through any SQLAlchemy session of this process (a flush, or an
  UPDATE/DELETE statement) to a table an answer comes from empties every cache
  of the process when its transaction commits, so the next message sees it: the
  CLI, the admin console and the portal all write through sessions;
- another process (the CLI, a second `serve` on PostgreSQL, a worker process)
  sees the change once its entries expire, within the lifetime.

A load that was running while a change committed does not store its (possibly
old) answer. Values are immutable (tuples, frozensets, frozen dataclasses), never
ORM objects bound to a session. The caches hang off a session factory
(`install`), so two runtimes in one process (tests, several databases) never
share answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway import db
from gateway.models import Account, Address, Autoresponder, EncryptionRule
from gateway.readers import ReadPool
from keystore.unlocked import UnlockedKeys

if TYPE_CHECKING:
    # Imported where an answer is loaded: every `Runtime` (so every CLI command)
    # installs the caches, few of them load an answer.
    from gateway.admin import policy as admin_policy
    from gateway.settings import Settings

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

INFO_KEY = "sealgate.lookups"
_CHANGED = "sealgate.lookups_changed"
DEFAULT_MAXSIZE = 4096

# Tables the cached answers come from; for some, only the columns that matter (an
# address's password rehash or a login timestamp does not change any answer).
WATCHED: dict[str, frozenset[str] | None] = {
    "accounts": frozenset({"always_encrypt", "disabled_at", "language"}),
    "addresses": frozenset({"address", "account_id", "domain_id"}),
    "aliases": None,
    "domains": None,
    "encryption_rules": None,
    "policy_settings": None,
    "autoresponders": None,
    "keystore_keys": None,
}


@dataclass
class _Entry(Generic[V]):
    loaded_at: float
    value: V


class TtlCache(Generic[K, V]):
    """A bounded, thread-safe map whose entries live `ttl` seconds (given per read)."""

    def __init__(self, maxsize: int = DEFAULT_MAXSIZE) -> None:
        self.maxsize = maxsize
        self._items: OrderedDict[K, _Entry[V]] = OrderedDict()
        self._lock = threading.Lock()
        self._generation = 0

    def get(self, key: K, ttl: float, load: Callable[[], V]) -> V:
        """The cached answer for `key` if younger than `ttl`, else `load()` (kept if no
        invalidation happened meanwhile)."""
        if ttl <= 0:
            return load()
        started = time.monotonic()
        with self._lock:
            entry = self._items.get(key)
            if entry is not None and started - entry.loaded_at < ttl:
                self._items.move_to_end(key)
                return entry.value
            generation = self._generation
        value = load()
        with self._lock:
            if self._generation == generation:
                self._items[key] = _Entry(started, value)
                self._items.move_to_end(key)
                while len(self._items) > self.maxsize:
                    self._items.popitem(last=False)
        return value

    def peek(self, key: K, ttl: float) -> V | None:
        """The cached answer if younger than `ttl`, else None; never loads."""
        if ttl <= 0:
            return None
        with self._lock:
            entry = self._items.get(key)
            if entry is None or time.monotonic() - entry.loaded_at >= ttl:
                return None
            self._items.move_to_end(key)
            return entry.value

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True)
class SenderFacts:
    """What the pipeline needs about the submitting account."""

    owned: frozenset[str]
    always_encrypt: bool


@dataclass(frozen=True)
class Destination:
    """Where mail for one recipient goes: `hosted` if its domain is ours, and then the
    address it is delivered to (itself, an alias's target), or None for an unknown one."""

    hosted: bool
    address: str | None = None
    disabled_domain: str | None = None  # the hosted domain's name when an admin disabled it


class Lookups:
    """The caches of one session factory (one database), with their lifetime."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.senders: TtlCache[int, SenderFacts] = TtlCache()
        self.rule_domains: TtlCache[str, frozenset[str]] = TtlCache(1)
        self.policies: TtlCache[admin_policy.Policy, admin_policy.Policy] = TtlCache(16)
        self.destinations: TtlCache[str, Destination] = TtlCache()
        self.autoresponders: TtlCache[int, bool] = TtlCache()
        self.current_keys: TtlCache[str, Any] = TtlCache()
        self.signing_keys = UnlockedKeys(ttl)

    def clear(self) -> None:
        self.signing_keys.clear()
        for cache in (
            self.senders,
            self.rule_domains,
            self.policies,
            self.destinations,
            self.autoresponders,
            self.current_keys,
        ):
            cache.clear()


_registry: weakref.WeakSet[Lookups] = weakref.WeakSet()
_registry_lock = threading.Lock()
_listening = False


def install(factory: so.sessionmaker[so.Session], ttl: float) -> Lookups:
    """Give `factory`'s sessions a set of caches (found again with `of`)."""
    lookups = Lookups(ttl)
    info = factory.kw.setdefault("info", {})
    info[INFO_KEY] = lookups
    with _registry_lock:
        _registry.add(lookups)
    _listen()
    return lookups


def of(source: so.Session | so.sessionmaker[so.Session]) -> Lookups | None:
    """The caches installed on the session's factory; None means: read everything."""
    info = source.info if isinstance(source, so.Session) else source.kw.get("info", {})
    found = info.get(INFO_KEY)
    return found if isinstance(found, Lookups) else None


def clear_all() -> None:
    """Empty every cache of this process (any database)."""
    with _registry_lock:
        every = list(_registry)
    for lookups in every:
        lookups.clear()


# --- invalidation ----------------------------------------------------------------------


def _listen() -> None:
    """Watch every ORM session of the process (once): a write anywhere drops the answers."""
    global _listening
    with _registry_lock:
        if _listening:
            return
        sa.event.listen(so.Session, "after_flush", _after_flush)
        sa.event.listen(so.Session, "do_orm_execute", _on_execute)
        sa.event.listen(so.Session, "after_commit", _after_commit)
        sa.event.listen(so.Session, "after_transaction_end", _after_transaction_end)
        _listening = True


def _table_of(obj: object) -> str:
    table = sa.inspect(obj).mapper.persist_selectable
    return str(getattr(table, "name", ""))


def _matters(obj: object, *, changed_only: bool) -> bool:
    name = _table_of(obj)
    if name not in WATCHED:
        return False
    columns = WATCHED[name]
    if not changed_only or columns is None:
        return True
    attrs = sa.inspect(obj).attrs
    return any(attrs[c].history.has_changes() for c in columns if c in attrs)


def _after_flush(session: so.Session, _context: Any) -> None:
    if session.info.get(_CHANGED):
        return
    if (
        any(_matters(o, changed_only=False) for o in session.new)
        or any(_matters(o, changed_only=False) for o in session.deleted)
        or any(_matters(o, changed_only=True) for o in session.dirty)
    ):
        session.info[_CHANGED] = True


def _on_execute(state: so.ORMExecuteState) -> None:
    if not (state.is_update or state.is_delete or state.is_insert):
        return
    table = getattr(state.statement, "table", None)
    if getattr(table, "name", None) in WATCHED:
        state.session.info[_CHANGED] = True


def _after_commit(session: so.Session) -> None:
    if session.info.pop(_CHANGED, False):
        clear_all()


def _after_transaction_end(session: so.Session, transaction: so.SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_CHANGED, None)


# --- a reader for one message ------------------------------------------------------------


class Reader:
    """Cached answers for one message; opens a read-only session only on a miss."""

    def __init__(self, factory: so.sessionmaker[so.Session], stack: contextlib.ExitStack) -> None:
        self._factory = factory
        self._stack = stack
        self._session: so.Session | None = None
        self._lookups = of(factory)

    @property
    def session(self) -> so.Session:
        if self._session is None:
            self._session = self._stack.enter_context(db.read_only(self._factory))
        return self._session

    def _get(self, cache: Callable[[Lookups], TtlCache[K, V]], key: K, load: Callable[[], V]) -> V:
        if self._lookups is None:
            return load()
        return cache(self._lookups).get(key, self._lookups.ttl, load)

    def sender(self, account_id: int) -> SenderFacts:
        return self._get(
            lambda c: c.senders, account_id, lambda: sender_facts(self.session, account_id)
        )

    def rule_domains(self) -> frozenset[str]:
        return self._get(lambda c: c.rule_domains, "", lambda: rule_domains(self.session))

    def policy(self, settings: Settings) -> admin_policy.Policy:
        """The admin policy in force for `settings` (`gateway.admin.policy.effective`)."""
        from gateway.admin import policy as admin_policy

        return self._get(
            lambda c: c.policies,
            admin_policy.defaults(settings),
            lambda: admin_policy.effective(self.session, settings),
        )

    def destination(self, rcpt: str) -> Destination:
        key = rcpt.strip().lower()
        return self._get(lambda c: c.destinations, key, lambda: destination(self.session, key))


def cached_destination(factory: so.sessionmaker[so.Session], rcpt: str) -> Destination | None:
    """The cached answer only, without touching the database (None on a miss): the SMTP
    server asks it on the event loop at each RCPT and goes to a thread only on a miss."""
    lookups = of(factory)
    if lookups is None:
        return None
    return lookups.destinations.peek(rcpt.strip().lower(), lookups.ttl)


def load_destination(factory: so.sessionmaker[so.Session], rcpt: str) -> Destination:
    """Where mail for `rcpt` goes, through the cache (blocking: not on the event loop)."""
    with reader(factory) as known:
        return known.destination(rcpt)


async def destination_at_rcpt(
    factory: so.sessionmaker[so.Session], rcpt: str, readers: ReadPool | None = None
) -> Destination:
    """For an SMTP server's RCPT, on its event loop: the cached answer at once, or one
    read in a thread on a miss: one of `readers` (the server's pool for reads, which no
    writer waiting for the lock can fill: gateway.readers), else the default pool."""
    found = cached_destination(factory, rcpt)
    if found is None:
        if readers is None:
            found = await asyncio.to_thread(load_destination, factory, rcpt)
        else:
            found = await readers.run(load_destination, factory, rcpt)
    return found


@contextlib.contextmanager
def reader(factory: so.sessionmaker[so.Session]) -> Iterator[Reader]:
    with contextlib.ExitStack() as stack:
        yield Reader(factory, stack)


# --- the loads ---------------------------------------------------------------------------


def sender_facts(session: so.Session, account_id: int) -> SenderFacts:
    owned = session.scalars(sa.select(Address.address).where(Address.account_id == account_id))
    always = session.scalar(sa.select(Account.always_encrypt).where(Account.id == account_id))
    return SenderFacts(owned=frozenset(owned), always_encrypt=bool(always))


def rule_domains(session: so.Session) -> frozenset[str]:
    return frozenset(d.lower() for d in session.scalars(sa.select(EncryptionRule.domain)))


def destination(session: so.Session, rcpt: str) -> Destination:
    from gateway import accounts
    from gateway.addresses import domain_of

    domain = accounts.find_domain(session, domain_of(rcpt))
    if domain is None:
        return Destination(hosted=False)
    target = accounts.find_deliverable(session, rcpt)
    return Destination(
        hosted=True,
        address=target.address if target is not None else None,
        disabled_domain=domain.name if domain.disabled_at is not None else None,
    )


def has_autoresponder(session: so.Session, address_id: int) -> bool:
    """Whether the address has an active autoresponder (cached on the session's factory)."""

    def load() -> bool:
        found = session.scalar(
            sa.select(Autoresponder.id)
            .where(Autoresponder.address_id == address_id, Autoresponder.active.is_(True))
            .limit(1)
        )
        return found is not None

    lookups = of(session)
    if lookups is None:
        return load()
    return lookups.autoresponders.get(address_id, lookups.ttl, load)
