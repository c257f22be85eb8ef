"""Known clients: who has proven itself for an account, so others' guesses cannot lock it out.

`gateway.lockout` counts a known client's failures under a key of its own
(`lockout.client_key`); everyone else shares the account's count. Two kinds:

- a browser with the account's device cookie (OWASP's "device cookies"), set by the
  portal after a login that passed every factor (`webportal.devices`); the portal
  verifies it and hands the device id in (`device_client`);
- a mail program's network, its IPv4 address or IPv6 /64 (one host's privacy
  addresses rotate within it), from which the account logged in over SMTP or IMAP
  within `[security] known_client_days` (`mail_client`, `is_known_mail_client`).

A mail program logs in for every message, so noting its network must not cost a
write each time: each process writes a network at most once per `REFRESH` (a row's
`last_seen_at` is that coarse), and the row is read only when it matters: when the
account or that network is locked, or when a login failed and must be counted.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import threading
import weakref
from collections import OrderedDict

import sqlalchemy as sa
import sqlalchemy.exc
import sqlalchemy.orm as so

from gateway import purging
from gateway.models import KnownMailClient
from gateway.settings import SecuritySettings

REFRESH = dt.timedelta(days=1)
MEMO_ENTRIES = 10000
MAIL_PROTOCOLS = ("SMTP", "IMAP")


def period(security: SecuritySettings) -> dt.timedelta:
    """How long a success keeps a client known: never longer than the activity log keeps
    where a person logged in from."""
    return dt.timedelta(days=min(security.known_client_days, security.activity_days))


def enabled(security: SecuritySettings) -> bool:
    return security.known_client_days > 0


def network(ip: str) -> str | None:
    """The IPv4 address or IPv6 /64 as one client, or None for what is no address."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    bits = 32 if address.version == 4 else 64
    return str(ipaddress.ip_network(f"{address}/{bits}", strict=False))


def mail_client(ip: str) -> str | None:
    """The lockout client name of a mail program at `ip` (`lockout.client_key`)."""
    net = network(ip)
    return f"net:{net}" if net is not None else None


def device_client(device_id: str) -> str:
    """The lockout client name of a browser holding a verified device cookie."""
    return f"device:{device_id}"


def is_known_mail_client(
    session: so.Session, security: SecuritySettings, account_id: int, ip: str, now: dt.datetime
) -> bool:
    """True when the account logged in over SMTP or IMAP from `ip`'s network lately."""
    net = network(ip)
    if net is None or not enabled(security):
        return False
    seen = session.scalar(
        sa.select(KnownMailClient.last_seen_at).where(
            KnownMailClient.account_id == account_id, KnownMailClient.network == net
        )
    )
    return seen is not None and seen > now - period(security)


class _Memo:
    """What this process wrote lately: (account, network) → when (bounded, LRU)."""

    def __init__(self) -> None:
        self._seen: OrderedDict[tuple[int, str], dt.datetime] = OrderedDict()
        self._guard = threading.Lock()

    def fresh(self, key: tuple[int, str], now: dt.datetime) -> bool:
        with self._guard:
            at = self._seen.get(key)
            return at is not None and at <= now < at + REFRESH

    def note(self, key: tuple[int, str], now: dt.datetime) -> None:
        with self._guard:
            self._seen[key] = now
            self._seen.move_to_end(key)
            while len(self._seen) > MEMO_ENTRIES:
                self._seen.popitem(last=False)

    def forget(self, key: tuple[int, str]) -> None:
        with self._guard:
            self._seen.pop(key, None)


# One memo per database (engine): a process may open several (tests do), with the
# same account ids in each.
_memos: weakref.WeakKeyDictionary[object, _Memo] = weakref.WeakKeyDictionary()
_memos_guard = threading.Lock()


def _memo(bind: object) -> _Memo:
    with _memos_guard:
        memo = _memos.get(bind)
        if memo is None:
            memo = _memos[bind] = _Memo()
        return memo


# (the database, (account id, network)) that `note_mail_login` wrote.
Noted = tuple[object, tuple[int, str]]


def note_mail_login(
    session: so.Session, security: SecuritySettings, account_id: int, ip: str, now: dt.datetime
) -> Noted | None:
    """A mail program logged in from `ip`: its network is known (in the caller's
    transaction), unless this process noted it within `REFRESH` already. What was
    written goes to `noted` once the transaction has committed."""
    net = network(ip)
    if net is None or not enabled(security):
        return None
    bind = session.get_bind()
    key = (account_id, net)
    if _memo(bind).fresh(key, now):
        return None
    updated = session.execute(
        sa.update(KnownMailClient)
        .where(KnownMailClient.account_id == account_id, KnownMailClient.network == net)
        .values(last_seen_at=now)
        .execution_options(synchronize_session=False)
    )
    if not getattr(updated, "rowcount", 0):
        try:
            with session.begin_nested():
                session.add(KnownMailClient(account_id=account_id, network=net, last_seen_at=now))
        except sqlalchemy.exc.IntegrityError:
            pass  # another process noted it at the same moment: as good
    return bind, key


def noted(written: Noted, now: dt.datetime) -> None:
    """`note_mail_login`'s row is committed: skip it for `REFRESH` in this process."""
    bind, key = written
    _memo(bind).note(key, now)


def purge(
    factory: so.sessionmaker[so.Session],
    security: SecuritySettings,
    now: dt.datetime,
    batches: purging.Batches | None = None,
) -> int:
    """Drop networks not seen within the known period (they know nothing any more), in
    short transactions of their own (gateway.purging)."""
    return purging.delete_in_batches(factory, KnownMailClient, stale(security, now), batches)


def stale(security: SecuritySettings, now: dt.datetime) -> sa.ColumnElement[bool]:
    """The networks `purge` drops."""
    return KnownMailClient.last_seen_at < now - period(security)
