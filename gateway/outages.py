"""Outages of what the gateway stands on: the database, the disk, the master key ring.

One place tells an outage (the database unreachable or its file unavailable, the disk
full, the ring file no longer loading) from a bug, and logs it: one WARNING line when
it starts, again every `REPEAT_SECONDS` while it lasts or when its reason changes, and
one INFO line when it ends. No traceback: every SMTP session, portal request and IMAP
command that meets it would otherwise log one (a log flood that buries the cause).

The edges (gateway.smtp_server, gateway.workers, gateway.imap.server, the portal's
error pages, the relay and purge loops) ask `report(error)`: an `Outage` means "answer
try-again-later" (SMTP `451 4.3.0`, or `452 4.3.1` for a full disk; IMAP `NO
[UNAVAILABLE]`; the portal a 503); None means a bug, handled as before. The end of an
outage is seen where work succeeds: a committed transaction (`gateway.db`), a ring
that loads again (`WatchedRingFile`).

The logged reason is built from error codes (SQLite's error name, PostgreSQL's
SQLSTATE, errno) and libpq's connection messages, never from a statement or its
parameters, which can quote mail, hashes or tokens.
"""

from __future__ import annotations

import enum
import errno
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import sqlalchemy as sa

from keystore.masterkey import MasterKeyRing, RingFile, RingUnavailable

log = logging.getLogger(__name__)

# How often a lasting outage is said again.
REPEAT_SECONDS = 600.0


class Kind(enum.Enum):
    DATABASE = "database unavailable"
    DISK_FULL = "disk full"
    RING = "master key ring unavailable"


@dataclass(frozen=True)
class Outage:
    kind: Kind
    reason: str

    def __str__(self) -> str:
        return f"{self.kind.value} ({self.reason})"


# SQLite primary result codes (the low byte of an extended code) that say the file
# cannot be used now: busy or locked past the busy timeout, cannot be opened, I/O
# error, not a database (replaced or truncated), read-only, no permission.
_SQLITE_FULL = 13
_SQLITE_UNAVAILABLE = {3, 5, 6, 8, 10, 14, 26}
# PostgreSQL SQLSTATEs: class 08 (connection exception), server shutting down or
# starting (57P01-57P03), too many connections, out of memory; 53100 is disk full.
_PG_DISK_FULL = "53100"
_PG_UNAVAILABLE = {"57P01", "57P02", "57P03", "53300", "53200"}
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


def classify(error: BaseException) -> Outage | None:
    """The outage `error` (or an error it was raised from) stands for, else None."""
    for exc in _chain(error):
        found = _classify_one(exc)
        if found is not None:
            return found
    return None


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen and len(seen) < 16:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _classify_one(exc: BaseException) -> Outage | None:
    if isinstance(exc, RingUnavailable):
        return Outage(Kind.RING, str(exc))
    if isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS:
        return Outage(Kind.DISK_FULL, errno.errorcode.get(exc.errno or 0, "ENOSPC"))
    if isinstance(exc, sa.exc.TimeoutError):  # the pool waited in vain for a connection
        return Outage(Kind.DATABASE, "no database connection came free")
    if isinstance(exc, sa.exc.DisconnectionError):
        return Outage(Kind.DATABASE, "the connection was lost")
    if isinstance(exc, sa.exc.DBAPIError):
        return _database(exc)
    if isinstance(exc, sqlite3.Error):
        return _sqlite(exc)
    return None


def _database(exc: sa.exc.DBAPIError) -> Outage | None:
    orig = exc.orig
    if isinstance(orig, sqlite3.Error):
        return _sqlite(orig)
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate == _PG_DISK_FULL:
        return Outage(Kind.DISK_FULL, f"SQLSTATE {sqlstate}")
    if isinstance(sqlstate, str) and (sqlstate.startswith("08") or sqlstate in _PG_UNAVAILABLE):
        return Outage(Kind.DATABASE, f"SQLSTATE {sqlstate}")
    if exc.connection_invalidated:
        return Outage(Kind.DATABASE, "the connection was lost")
    libpq = type(orig).__module__.partition(".")[0] in ("psycopg", "psycopg2")
    if libpq and sqlstate is None and isinstance(exc, sa.exc.OperationalError):
        # libpq's own errors (no server answer): connection refused, timed out, closed.
        # They name the host and port, never a password or a statement.
        first = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        return Outage(Kind.DATABASE, first[:200])
    return None


def _sqlite(exc: sqlite3.Error) -> Outage | None:
    code = getattr(exc, "sqlite_errorcode", None)
    if not isinstance(code, int):
        return None
    name = str(getattr(exc, "sqlite_errorname", code))
    if code & 0xFF == _SQLITE_FULL:
        return Outage(Kind.DISK_FULL, name)
    if code & 0xFF in _SQLITE_UNAVAILABLE:
        return Outage(Kind.DATABASE, name)
    return None


class Watch:
    """Which outages this process is in, and the lines that say so."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, repeat: float = REPEAT_SECONDS
    ) -> None:
        self._clock = clock
        self._repeat = repeat
        self._lock = threading.Lock()
        # kind -> (reason, when it started, when it was last said)
        self._current: dict[Kind, tuple[str, float, float]] = {}

    def failed(self, outage: Outage) -> None:
        now = self._clock()
        with self._lock:
            known = self._current.get(outage.kind)
            if known is None:
                self._current[outage.kind] = (outage.reason, now, now)
                log.warning("outage: %s; answering try-again-later until it ends", outage)
                return
            reason, started, said = known
            if reason != outage.reason:
                self._current[outage.kind] = (outage.reason, started, now)
                log.warning("outage: %s (the reason changed)", outage)
            elif now - said >= self._repeat:
                self._current[outage.kind] = (reason, started, now)
                log.warning("outage: %s, for %d minutes now", outage, (now - started) // 60)

    def ended(self, *kinds: Kind) -> None:
        if not self._current:  # the common case, without the lock
            return
        now = self._clock()
        with self._lock:
            for kind in kinds:
                known = self._current.pop(kind, None)
                if known is not None:
                    log.info("outage ended: %s, after %d s", kind.value, now - known[1])

    @property
    def current(self) -> frozenset[Kind]:
        with self._lock:
            return frozenset(self._current)


WATCH = Watch()


def report(error: BaseException) -> Outage | None:
    """The outage `error` stands for, logged as the process's watch decides; else None."""
    outage = classify(error)
    if outage is not None:
        WATCH.failed(outage)
    return outage


def ended(*kinds: Kind) -> None:
    """Work that needed `kinds` just succeeded: any outage of them is over."""
    WATCH.ended(*kinds)


class WatchedRingFile(RingFile):
    """The ring file, whose loading again ends a ring outage."""

    def get(self) -> MasterKeyRing:
        ring = super().get()
        WATCH.ended(Kind.RING)
        return ring
