"""Account lockout: after too many failed logins for one name, refuse it for a while.

Counters are shared by every process: in the database (the default) or in Redis
(`[security] lockout_storage`), never in one process's memory, so spreading
guesses over several portal or gateway processes gains nothing. Each lock lasts
twice as long as the one before (from `lockout_first` up to `lockout_max`);
a successful portal login (every factor passed), or `sealgate user unlock`, clears
the record (a login from a known browser, below, clears only that browser's). A mail
program's right login does not: it proves an address or app password, not what may
be being guessed in the portal meanwhile.

Keys name what is being guessed. A login name that belongs to an account counts
under `account:<account id>`, whichever protocol it came by: wrong passwords in
the portal (its account password, its second factor, a password confirmation),
over SMTP AUTH and over IMAP (an address password or an app password of the
account) all add to the one count, and a lock refuses the account everywhere. So
an attacker gains nothing by spreading guesses over protocols; the price is that
a mail program with an old password can lock its owner out of the portal too
(`sealgate user unlock` lifts it). A name that is no account counts under
`name:<name as typed, normalised>` (an IDN domain's two forms as one), in every
protocol alike, so a lock says nothing about whether an account exists. While a key
is locked its attempts are refused without a password check and are not counted.

Known clients (OWASP's "device cookies"). Counted that way alone, about
`lockout_threshold` wrong passwords per lock, from anyone, would keep the owner out
for ever: in the portal and in their own mail programs. So a client that has proven
itself for the account is "known" (`gateway.known_clients`): a browser holding the
account's device cookie (set after a portal login that passed every factor), or a
mail program's network (its IPv4 address, its IPv6 /64) from which the account
logged in over SMTP or IMAP within `[security] known_client_days`. A known client
counts under a key of its own, `account:<id>:<client>` (`client_key`), which locks
only that client; it does not add to, and is not refused by, the account's count.
Everyone else keeps counting under `account:<id>`, so guesses spread over many
unknown addresses still lock the account for all of them. The trade-off: during an
attack, the owner on a network and in a browser not yet known (a new phone, a
hotel) is locked out like the attacker; and whoever shares a known network (a
carrier NAT, an office) gets its guesses counted under that network's key, which
then locks the owner's mail programs there too. `sealgate user unlock` clears the
account's key and every client key under it (`clear_account`).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa
import sqlalchemy.exc
import sqlalchemy.orm as so

from gateway import credential_cache, purging
from gateway.addresses import one_form
from gateway.models import LoginLockout
from gateway.settings import SecuritySettings

if TYPE_CHECKING:
    # Imported where a Redis store is made: most installs count in the database.
    import redis

MAX_KEY_LENGTH = 400
# SMTP AUTH for a locked account: temporary, so mail programs retry instead of asking again.
SMTP_LOCKED = "454 4.7.0 Too many failed logins for this account; try again later"


@dataclass(frozen=True)
class Policy:
    threshold: int
    window: dt.timedelta
    first_lock: dt.timedelta
    max_lock: dt.timedelta

    @classmethod
    def from_settings(cls, security: SecuritySettings) -> Policy:
        return cls(
            threshold=security.lockout_threshold,
            window=dt.timedelta(seconds=security.lockout_window),
            first_lock=dt.timedelta(seconds=security.lockout_first),
            max_lock=dt.timedelta(seconds=security.lockout_max),
        )

    def lock_length(self, lock_count: int) -> dt.timedelta:
        """The `lock_count`-th lock (from 1): doubling, capped."""
        exponent = min(max(lock_count - 1, 0), 40)
        return min(self.first_lock * (1 << exponent), self.max_lock)

    @property
    def memory(self) -> dt.timedelta:
        """How long a quiet name keeps its lock count before starting again from the first."""
        return max(self.max_lock, self.window) * 2


def account_key(account_id: int) -> str:
    """The one count of an account's failed logins, over every protocol."""
    return f"account:{account_id}"


def client_key(account_id: int, client: str) -> str:
    """The count of one known client of an account (`gateway.known_clients`): its
    failures lock that client alone."""
    return f"{account_key(account_id)}:{client}"[:MAX_KEY_LENGTH]


def name_key(login: str) -> str:
    """The count of a login name that is no account (as typed, normalised): an address
    under an IDN domain counts once under both forms of that domain (`one_form`)."""
    return "name:" + one_form(login.strip())[: MAX_KEY_LENGTH - 5]


class Store(Protocol):
    def locked_until(self, key: str, now: dt.datetime) -> dt.datetime | None:
        """The end of the lock on `key`, or None when it is not locked."""

    def record_failure(self, key: str, now: dt.datetime) -> dt.datetime | None:
        """Count one failure; the end of the lock it started, if it started one."""

    def locked_among(self, keys: Sequence[str], now: dt.datetime) -> frozenset[str]:
        """Those of `keys` locked now, in one round trip (a login asks for two)."""

    def clear(self, key: str) -> None:
        """Forget the failures and the lock (a successful login, an admin's unlock)."""

    def clear_account(self, account_id: int) -> None:
        """Forget the account's count and those of all its known clients (an unlock)."""


def _counted(key: str, until: dt.datetime) -> dt.datetime:
    """A lock started: count it (the `sealgate_lockouts` metric), make this process
    forget the account's verified logins (other processes see the lock when they
    read it, on every login), and pass it on."""
    from gateway import metrics  # rare, and the CLI need not load prometheus_client

    metrics.LOCKOUTS.labels(metrics.lockout_key_kind(key)).inc()
    kind, _, rest = key.partition(":")
    account_id = rest.partition(":")[0]  # a known client's key too: `client_key`
    if kind == "account" and account_id.isdigit():
        credential_cache.forget_account(int(account_id))
    return until


class DatabaseStore:
    """Counters in `login_lockouts`, written in the caller's transaction."""

    def __init__(self, session: so.Session, policy: Policy) -> None:
        self.session = session
        self.policy = policy

    def _row(self, key: str, *, lock: bool) -> LoginLockout | None:
        query = sa.select(LoginLockout).where(LoginLockout.key == key)
        if lock:
            query = query.with_for_update()
        return self.session.scalar(query)

    def locked_until(self, key: str, now: dt.datetime) -> dt.datetime | None:
        # The column alone: every login asks, and loading the row as an object cost
        # more than the rest of a cached login's read.
        until = self.session.scalar(
            sa.select(LoginLockout.locked_until).where(LoginLockout.key == key)
        )
        if until is None or until <= now:
            return None
        return until

    def locked_among(self, keys: Sequence[str], now: dt.datetime) -> frozenset[str]:
        rows = self.session.execute(
            sa.select(LoginLockout.key).where(
                LoginLockout.key.in_(list(keys)), LoginLockout.locked_until > now
            )
        )
        return frozenset(rows.scalars())

    def record_failure(self, key: str, now: dt.datetime) -> dt.datetime | None:
        row = self._row(key, lock=True)
        if row is None:
            try:
                with self.session.begin_nested():
                    row = LoginLockout(
                        key=key,
                        failures=0,
                        window_started_at=now,
                        locked_until=None,
                        lock_count=0,
                        last_failure_at=now,
                    )
                    self.session.add(row)
            except sqlalchemy.exc.IntegrityError:
                row = self._row(key, lock=True)
                assert row is not None
        if row.locked_until is not None and row.locked_until > now:
            return None  # already locked: not counted
        if now - row.last_failure_at > self.policy.memory:
            row.lock_count = 0
        if now - row.window_started_at > self.policy.window:
            row.window_started_at = now
            row.failures = 0
        row.failures += 1
        row.last_failure_at = now
        if row.failures < self.policy.threshold:
            return None
        row.lock_count += 1
        row.failures = 0
        row.window_started_at = now
        row.locked_until = now + self.policy.lock_length(row.lock_count)
        return _counted(key, row.locked_until)

    def clear(self, key: str) -> None:
        self.session.execute(sa.delete(LoginLockout).where(LoginLockout.key == key))

    def clear_account(self, account_id: int) -> None:
        key = account_key(account_id)
        self.session.execute(
            sa.delete(LoginLockout).where(
                sa.or_(LoginLockout.key == key, LoginLockout.key.startswith(key + ":"))
            )
        )


# Atomic in Redis: read the record, count the failure, maybe lock, write it back.
# Times are whole seconds since the epoch, passed in (the caller's clock).
_RECORD_FAILURE = """
local now = tonumber(ARGV[1])
local window, threshold = tonumber(ARGV[2]), tonumber(ARGV[3])
local first, max_lock, memory = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local h = redis.call('HMGET', KEYS[1], 'start', 'fails', 'locks', 'until', 'last')
local start, fails = tonumber(h[1] or now), tonumber(h[2] or 0)
local locks, until_, last = tonumber(h[3] or 0), tonumber(h[4] or 0), tonumber(h[5] or now)
if until_ > now then return '0' end
if now - last > memory then locks = 0 end
if now - start > window then start = now; fails = 0 end
fails = fails + 1
local result = '0'
if fails >= threshold then
  locks = locks + 1
  local length = first * 2 ^ math.min(locks - 1, 40)
  if length > max_lock then length = max_lock end
  until_ = now + length
  fails = 0
  start = now
  result = tostring(until_)
end
redis.call('HSET', KEYS[1], 'start', start, 'fails', fails, 'locks', locks,
           'until', until_, 'last', now)
redis.call('EXPIRE', KEYS[1], memory)
return result
"""


class RedisStore:
    """Counters in Redis hashes `<prefix>:<key>`, for deployments that already share Redis."""

    def __init__(
        self, client: redis.Redis, policy: Policy, prefix: str = "sealgate:lockout"
    ) -> None:
        self.client = client
        self.policy = policy
        self.prefix = prefix
        self._script: Any = client.register_script(_RECORD_FAILURE)

    def _name(self, key: str) -> str:
        return f"{self.prefix}:{key}"

    def locked_until(self, key: str, now: dt.datetime) -> dt.datetime | None:
        raw = self.client.hget(self._name(key), "until")
        if raw is None:
            return None
        until = dt.datetime.fromtimestamp(int(float(raw)), dt.UTC)
        return until if until > now else None

    def locked_among(self, keys: Sequence[str], now: dt.datetime) -> frozenset[str]:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hget(self._name(key), "until")
        locked = set()
        for key, raw in zip(keys, pipe.execute(), strict=True):
            if raw is not None and int(float(raw)) > now.timestamp():
                locked.add(key)
        return frozenset(locked)

    def record_failure(self, key: str, now: dt.datetime) -> dt.datetime | None:
        policy = self.policy
        result = self._script(
            keys=[self._name(key)],
            args=[
                int(now.timestamp()),
                int(policy.window.total_seconds()),
                policy.threshold,
                int(policy.first_lock.total_seconds()),
                int(policy.max_lock.total_seconds()),
                max(int(policy.memory.total_seconds()), 1),
            ],
        )
        text = result.decode() if isinstance(result, bytes) else str(result)
        seconds = int(float(text))
        return _counted(key, dt.datetime.fromtimestamp(seconds, dt.UTC)) if seconds else None

    def clear(self, key: str) -> None:
        self.client.delete(self._name(key))

    def clear_account(self, account_id: int) -> None:
        key = account_key(account_id)
        names = [self._name(key), *self.client.scan_iter(match=self._name(key) + ":*")]
        self.client.delete(*names)


_redis_clients: dict[str, redis.Redis] = {}
_redis_guard = threading.Lock()


def _redis_client(url: str) -> redis.Redis:
    with _redis_guard:
        client = _redis_clients.get(url)
        if client is None:
            import redis

            client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
            _redis_clients[url] = client
        return client


def store_for(session: so.Session, security: SecuritySettings) -> Store:
    """The configured store; database counters share the caller's transaction."""
    policy = Policy.from_settings(security)
    if security.lockout_storage == "database":
        return DatabaseStore(session, policy)
    return RedisStore(_redis_client(security.lockout_storage), policy)


def purge(
    factory: so.sessionmaker[so.Session],
    now: dt.datetime,
    policy: Policy,
    batches: purging.Batches | None = None,
) -> int:
    """Drop database records that no longer lock and whose lock count has been forgotten,
    in short transactions of their own (gateway.purging)."""
    return purging.delete_in_batches(factory, LoginLockout, forgotten(now, policy), batches)


def forgotten(now: dt.datetime, policy: Policy) -> sa.ColumnElement[bool]:
    """The records `purge` drops."""
    return sa.and_(
        LoginLockout.last_failure_at < now - policy.memory,
        sa.or_(LoginLockout.locked_until.is_(None), LoginLockout.locked_until < now),
    )
