"""Purges delete in batches, one short transaction each, so other writers get the lock.

Threat (availability): one DELETE of a 2M-row mail log held SQLite's only write lock
for 37 s; every SMTP transaction and portal request that wanted to write stalled
behind it. Here a purge over more rows than a batch must commit several times, and a
writer that wants the lock while a batch runs must commit before the purge ends.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from gateway import db, purging
from gateway.admin import maillog
from gateway.models import MailLogEntry
from gateway.runtime import Runtime

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
OLD = NOW - dt.timedelta(days=30)


def entry(recipient: str, at: dt.datetime) -> MailLogEntry:
    return MailLogEntry(
        queue_id="Q" + recipient[:8],
        message_id="",
        sender="alice@example.test",
        recipient=recipient,
        handling="pgp",
        status=maillog.SENT,
        last_reply="250 2.0.0 Ok",
        created_at=at,
        updated_at=at,
    )


def fill(runtime: Runtime, old: int, kept: int) -> None:
    with db.transaction(runtime.sessions) as session:
        session.add_all(entry(f"old{n}@x.test", OLD) for n in range(old))
        session.add_all(entry(f"kept{n}@x.test", NOW) for n in range(kept))


def recipients(runtime: Runtime) -> list[str]:
    with db.read_only(runtime.sessions) as session:
        return sorted(session.scalars(sa.select(MailLogEntry.recipient)))


@pytest.fixture
def commits(runtime: Runtime) -> Iterator[list[str]]:
    """The name of the thread of every transaction committed on the runtime's engine."""
    seen: list[str] = []

    def committed(_conn: sa.Connection) -> None:
        seen.append(threading.current_thread().name)

    sa.event.listen(runtime.engine, "commit", committed)
    yield seen
    sa.event.remove(runtime.engine, "commit", committed)


def test_a_purge_over_more_rows_than_a_batch_commits_each_batch(
    runtime: Runtime, commits: list[str]
) -> None:
    fill(runtime, old=11, kept=2)
    commits.clear()
    progress: list[int] = []

    purged = maillog.purge(
        runtime.sessions, NOW, 20, purging.Batches(size=4, progress=progress.append, pause=0)
    )

    assert purged == 11
    assert progress == [4, 4, 3]
    assert len(commits) == 3  # one transaction per batch
    assert recipients(runtime) == ["kept0@x.test", "kept1@x.test"]


def test_the_default_batch_is_a_named_constant() -> None:
    assert purging.Batches().size == purging.BATCH_ROWS == 5000


def test_a_writer_waiting_for_the_lock_commits_between_two_batches(
    runtime: Runtime, commits: list[str]
) -> None:
    """The writer starts while the first batch holds the write lock (its DELETE ran,
    not yet committed); the purge, after that commit, waits until the writer has
    committed. With one DELETE for everything the writer could only commit after it."""
    fill(runtime, old=6, kept=0)
    commits.clear()
    purge_thread = threading.current_thread().name
    written = threading.Event()
    failed: list[BaseException] = []

    def writer() -> None:
        try:
            with db.transaction(runtime.sessions) as session:
                session.add(entry("fresh@x.test", NOW))
        except BaseException as exc:  # noqa: BLE001  (reported by the test)
            failed.append(exc)
        finally:
            written.set()

    writer_thread = threading.Thread(target=writer, name="writer")

    def deleted(conn: sa.Connection, *_args: Any) -> None:
        statement = str(_args[0])
        if statement.startswith("DELETE") and not writer_thread.is_alive() and not written.is_set():
            writer_thread.start()  # it waits for the lock this batch holds

    def between_batches(_count: int) -> None:
        # Without batches there is no "between": the purge would end first.
        assert written.wait(30), "the writer never got the lock between two batches"

    sa.event.listen(runtime.engine, "after_execute", deleted)
    try:
        purged = maillog.purge(
            runtime.sessions,
            NOW,
            20,
            purging.Batches(size=2, progress=between_batches, pause=0),
        )
    finally:
        sa.event.remove(runtime.engine, "after_execute", deleted)
        writer_thread.join(30)
    assert not failed
    assert purged == 6
    assert commits[:2] == [purge_thread, "writer"]  # the writer's commit came between
    assert commits.count(purge_thread) >= 3
    assert recipients(runtime) == ["fresh@x.test"]


def test_a_batch_needs_at_least_one_row() -> None:
    with pytest.raises(ValueError, match="at least one row"):
        purging.Batches(size=0)


MARKER = b"purge-marker-5f1c"


def database_files(runtime: Runtime) -> bytes:
    path = Path(str(runtime.engine.url.database))
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def test_purged_entries_leave_neither_the_database_nor_its_wal(runtime: Runtime) -> None:
    """Threat: a copy of the data directory (a backup, a stolen disk) still shows the
    addresses of mail-log entries purged long ago: in free pages of the database, or in
    the WAL, which SQLite reuses but never truncates."""
    if runtime.engine.dialect.name != "sqlite":
        pytest.skip("about SQLite's own files; PostgreSQL keeps no -wal file beside them")
    with db.transaction(runtime.sessions) as session:
        session.add_all(entry(f"{MARKER.decode()}-{n}@x.test", OLD) for n in range(200))
        session.add(entry("kept@x.test", NOW))
    raw = sqlite3.connect(str(runtime.engine.url.database))
    try:  # some of it into the database file too
        raw.execute("PRAGMA wal_checkpoint(PASSIVE)")
    finally:
        raw.close()
    assert MARKER in database_files(runtime)

    async def serve_purge() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(maillog.run_purge(runtime, stop, clock=lambda: NOW))
        while recipients(runtime) != ["kept@x.test"] and not task.done():
            await asyncio.sleep(0.02)
        stop.set()
        await task  # the run that purged ends with its checkpoint

    asyncio.run(serve_purge())
    assert recipients(runtime) == ["kept@x.test"]
    assert MARKER not in database_files(runtime)


def test_a_stopping_server_waits_for_one_batch_only(runtime: Runtime) -> None:
    """`serve` hands its stop event in: once set, no further batch begins (the rest goes
    at the next run), so stopping does not wait for a whole backlog."""
    fill(runtime, old=6, kept=0)
    progress: list[int] = []
    stopping = purging.Batches(size=2, progress=progress.append, pause=0, stop=lambda: True)
    assert maillog.purge(runtime.sessions, NOW, 20, stopping) == 2
    assert progress == [2] and len(recipients(runtime)) == 4
    assert maillog.purge(runtime.sessions, NOW, 20, purging.Batches(size=2, pause=0)) == 4
