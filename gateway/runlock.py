"""Whether a `sealgate serve` runs on a data dir, so a restore does not replace its
database underneath it (nor an init migrate it).

A restore that replaced the SQLite file under a running serve left serve writing to
the unlinked file: every message it answered with 250 afterwards was gone when it
stopped. serve holds a shared `flock` on `<data dir>/serve.lock` for its whole life;
restore takes the lock exclusively, without waiting, for as long as it works, and
serve does not start while a restore holds it. `sealgate init` takes it exclusively
too: it must not migrate the schema under a running serve. The kernel drops a lock
with its process, so a killed serve leaves nothing to clean up.

That lock sees one host. Several serve processes on several hosts may share one
PostgreSQL database (docs/deployment.md): there each also takes a session-level
advisory lock on the database (RUN_LOCK_KEY), shared for serve, exclusive for init's
migration and for a restore, each on one dedicated connection held while it runs.
PostgreSQL ends a session lock with its connection, so a killed serve leaves nothing
there either. SQLite has only the file lock: its database lives in the data dir.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

LOCK_FILE = "serve.lock"
# The PostgreSQL advisory lock key of every sealgate process sharing a database:
# "sealgate" in ASCII as a bigint. Never change it: serve and init of two releases
# (during an upgrade) must meet on the same key.
RUN_LOCK_KEY = 0x7365616C67617465


class DataDirBusy(RuntimeError):
    """The lock is held the other way (serve runs, or a restore or an init does)."""


def _open(data_dir: Path) -> int:
    return os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


def hold_for_serve(data_dir: Path) -> int:
    """Take the shared lock for this process's life; the descriptor holding it.

    Raises DataDirBusy while a restore or an init runs on `data_dir`.
    """
    fd = _open(data_dir)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DataDirBusy(f"a restore or `sealgate init` is running on {data_dir}") from None
    return fd


@contextlib.contextmanager
def exclusive(data_dir: Path) -> Iterator[None]:
    """Hold the lock alone while the block runs; DataDirBusy if serve holds it."""
    fd = _open(data_dir)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataDirBusy(f"sealgate serve is running on {data_dir}") from None
        yield
    finally:
        os.close(fd)


def describe_database(url: str) -> str:
    """The database for a message, without its password."""
    parsed = sa.engine.make_url(url)
    where = f"{parsed.host}:{parsed.port or 5432}" if parsed.host else "the local socket"
    return f"the PostgreSQL database {parsed.database} at {where}"


def _lock_connection(url: str, application_name: str) -> tuple[sa.Engine, sa.Connection]:
    """A connection of its own (not one of a pool that others check out and return),
    in autocommit: the lock belongs to the session, not to a transaction, and the idle
    session holds no table lock that a migration or pg_restore would wait for."""
    from gateway import db

    engine = db.create_engine(url, pre_ping=False, application_name=application_name)
    try:
        return engine, engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    except BaseException:
        engine.dispose()
        raise


class DatabaseHold:
    """serve's share of the database's run lock, held on one connection until release
    (or until the process ends: PostgreSQL drops the lock with the session)."""

    def __init__(self, engine: sa.Engine, connection: sa.Connection) -> None:
        self._engine, self._connection = engine, connection

    def release(self) -> None:
        self._connection.close()
        self._engine.dispose()  # the session ends, and its lock with it


def hold_database_for_serve(url: str, application_name: str) -> DatabaseHold | None:
    """On PostgreSQL, take the shared run lock; None on SQLite. DataDirBusy while an
    init's migration or a restore holds it, on this host or another."""
    if not url.startswith("postgresql"):
        return None
    engine, connection = _lock_connection(url, application_name)
    taken = connection.scalar(
        sa.text("SELECT pg_try_advisory_lock_shared(:key)"), {"key": RUN_LOCK_KEY}
    )
    hold = DatabaseHold(engine, connection)
    if not taken:
        hold.release()
        raise DataDirBusy(f"a restore or `sealgate init` is running on {describe_database(url)}")
    return hold


@contextlib.contextmanager
def exclusive_database(url: str, application_name: str) -> Iterator[None]:
    """On PostgreSQL, hold the run lock alone while the block runs; DataDirBusy while a
    serve holds a share of it, on this host or another. Nothing on SQLite."""
    if not url.startswith("postgresql"):
        yield
        return
    engine, connection = _lock_connection(url, application_name)
    hold = DatabaseHold(engine, connection)
    try:
        taken = connection.scalar(
            sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": RUN_LOCK_KEY}
        )
        if not taken:
            raise DataDirBusy(
                f"sealgate serve is running on {describe_database(url)} (on this host or"
                " another that shares it)"
            )
        yield
    finally:
        hold.release()
