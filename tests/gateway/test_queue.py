"""The outbound queue's leases: due rows only, one worker per row, crashed leases expire.

The threat: two gateway processes sharing one database sending the same mail
twice, or a crash losing a row. Runs on SQLite and, with
SEALGATE_TEST_DATABASE_URL, on PostgreSQL (FOR UPDATE SKIP LOCKED).
"""

from __future__ import annotations

import datetime as dt
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from gateway import db, dsn
from gateway import queue as outbound
from gateway.models import AuditEvent, MailboxMessage, QueueItem
from gateway.queue import ClaimedItem, QueueError
from gateway.runtime import Runtime
from gateway.settings import RelaySettings

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
LEASE = 600.0


def add(
    runtime: Runtime, n: int = 1, *, now: dt.datetime = T0, mail_from: str = "a@x.test"
) -> None:
    with db.transaction(runtime.sessions) as session:
        for i in range(n):
            outbound.enqueue(
                session,
                queue_id=f"Q{i}",
                mail_from=mail_from,
                rcpt_to=f"r{i}@y.test",
                raw=b"Subject: s\r\n\r\nbody\r\n",
                now=now,
            )


def claim(runtime: Runtime, now: dt.datetime, limit: int = 10) -> list[ClaimedItem]:
    with db.transaction(runtime.sessions) as session:
        return outbound.claim(session, now=now, lease_seconds=LEASE, limit=limit)


def all_rows(runtime: Runtime) -> list[QueueItem]:
    with db.transaction(runtime.sessions) as session:
        return list(session.scalars(sa.select(QueueItem).order_by(QueueItem.id)))


def test_claim_takes_due_rows_and_leases_them(runtime: Runtime) -> None:
    add(runtime, 2)
    add(runtime, 1, now=T0 + dt.timedelta(hours=1))  # not due yet
    got = claim(runtime, T0)
    assert [c.rcpt_to for c in got] == ["r0@y.test", "r1@y.test"]
    assert all(c.lease == T0 + dt.timedelta(seconds=LEASE) for c in got)
    assert claim(runtime, T0) == []  # leased: nobody else gets them
    rows = all_rows(runtime)
    assert [r.status for r in rows] == ["sending", "sending", "queued"]
    assert "raw" not in repr(got[0])  # bodies stay out of reprs and logs


def test_a_crashed_workers_lease_expires(runtime: Runtime) -> None:
    add(runtime)
    [first] = claim(runtime, T0)
    assert claim(runtime, T0 + dt.timedelta(seconds=LEASE - 1)) == []
    [again] = claim(runtime, T0 + dt.timedelta(seconds=LEASE))
    assert again.id == first.id and again.lease > first.lease


def test_claim_respects_limit_and_order(runtime: Runtime) -> None:
    add(runtime, 5)
    assert [c.rcpt_to for c in claim(runtime, T0, limit=2)] == ["r0@y.test", "r1@y.test"]
    assert [c.rcpt_to for c in claim(runtime, T0, limit=2)] == ["r2@y.test", "r3@y.test"]


def test_two_workers_never_claim_the_same_row(runtime: Runtime) -> None:
    """Two threads, each with its own engine (as two processes), claim until the queue is dry."""
    total = 60
    add(runtime, total)
    engines = [db.create_engine(runtime.settings.database_url) for _ in range(2)]
    start = threading.Barrier(2)

    def worker(index: int) -> list[int]:
        sessions = db.session_factory(engines[index])
        mine: list[int] = []
        start.wait()
        while True:
            with db.transaction(sessions) as session:
                got = outbound.claim(session, now=T0, lease_seconds=LEASE, limit=3)
            if not got:
                return mine
            mine.extend(c.id for c in got)

    try:
        with ThreadPoolExecutor(2) as pool:
            claimed = [f.result(60) for f in [pool.submit(worker, i) for i in range(2)]]
    finally:
        for engine in engines:
            engine.dispose()
    assert set(claimed[0]).isdisjoint(claimed[1])
    assert sorted(claimed[0] + claimed[1]) == [r.id for r in all_rows(runtime)]
    assert len(claimed[0]) + len(claimed[1]) == total


def test_a_claim_in_progress_does_not_block_another(runtime: Runtime) -> None:
    """While one worker's claim transaction is still open, another gets the other rows.

    On PostgreSQL that is SKIP LOCKED (the second claim returns while the first
    still holds its row locks); SQLite serialises the two with BEGIN IMMEDIATE.
    """
    add(runtime, 4)
    other = db.create_engine(runtime.settings.database_url)
    other_sessions = db.session_factory(other)

    def second_worker() -> list[ClaimedItem]:
        with db.transaction(other_sessions) as session:
            return outbound.claim(session, now=T0, lease_seconds=LEASE, limit=10)

    try:
        with ThreadPoolExecutor(1) as pool:
            with db.transaction(runtime.sessions) as session:
                first = outbound.claim(session, now=T0, lease_seconds=LEASE, limit=2)
                later = pool.submit(second_worker)
                if runtime.engine.dialect.name == "postgresql":
                    second = later.result(10)
            second = later.result(10)
    finally:
        other.dispose()
    assert [c.rcpt_to for c in first] == ["r0@y.test", "r1@y.test"]
    assert [c.rcpt_to for c in second] == ["r2@y.test", "r3@y.test"]


def test_retry_delay_doubles_then_caps() -> None:
    relay = RelaySettings(first_retry=300.0, max_retry_interval=3600.0)
    delays = [outbound.retry_delay(n, relay) for n in (1, 2, 3, 4, 5, 6, 10_000)]
    assert delays == [300.0, 600.0, 1200.0, 2400.0, 3600.0, 3600.0, 3600.0]


def test_retry_jitter_is_bounded_and_deterministic() -> None:
    relay = RelaySettings(first_retry=300.0, max_retry_interval=3600.0)
    a = [outbound.retry_delay(3, relay, random.Random(42)) for _ in range(3)]
    b = [outbound.retry_delay(3, relay, random.Random(42)) for _ in range(3)]
    assert a == b
    spread = [outbound.retry_delay(3, relay, random.Random(seed)) for seed in range(50)]
    assert all(1080.0 <= d <= 1320.0 for d in spread)
    assert len(set(spread)) > 1


def test_defer_counts_the_attempt_and_backs_off(runtime: Runtime) -> None:
    add(runtime)
    relay = RelaySettings(first_retry=60.0, max_retry_interval=600.0)
    [item] = claim(runtime, T0)
    with db.transaction(runtime.sessions) as session:
        next_at = outbound.defer(session, item, error="451 busy", now=T0, relay=relay)
    assert next_at == T0 + dt.timedelta(seconds=60)
    [row] = all_rows(runtime)
    assert (row.status, row.attempts, row.leased_until, row.last_error) == (
        "queued",
        1,
        None,
        "451 busy",
    )
    assert row.next_attempt_at == next_at
    assert claim(runtime, T0 + dt.timedelta(seconds=59)) == []
    [again] = claim(runtime, T0 + dt.timedelta(seconds=60))
    with db.transaction(runtime.sessions) as session:
        later = outbound.defer(
            session, again, error="x" * 5000, now=T0 + dt.timedelta(seconds=60), relay=relay
        )
    assert later == T0 + dt.timedelta(seconds=60 + 120)
    [row] = all_rows(runtime)
    assert row.attempts == 2 and len(row.last_error) == outbound.MAX_ERROR_CHARS


def test_a_worker_whose_lease_ran_out_cannot_overwrite_the_next_one(runtime: Runtime) -> None:
    add(runtime, mail_from="")
    relay = RelaySettings()
    [stale] = claim(runtime, T0)
    later = T0 + dt.timedelta(seconds=LEASE + 1)
    [fresh] = claim(runtime, later)
    with db.transaction(runtime.sessions) as session:
        assert outbound.defer(session, stale, error="late", now=later, relay=relay) is None
        assert outbound.release(session, stale, now=later) is False
        failure = dsn.Failure("5.0.0", "smtp", "550 no")
        assert outbound.give_up(session, stale, failure, now=later, reporting_mta="gw") is None
    [row] = all_rows(runtime)
    assert (row.status, row.leased_until, row.attempts) == ("sending", fresh.lease, 0)
    with db.transaction(runtime.sessions) as session:
        assert outbound.mark_sent(session, fresh)
    assert all_rows(runtime) == []


def test_release_hands_the_row_back_without_counting(runtime: Runtime) -> None:
    add(runtime)
    [item] = claim(runtime, T0)
    with db.transaction(runtime.sessions) as session:
        assert outbound.release(session, item, now=T0)
    [row] = all_rows(runtime)
    assert (row.status, row.attempts, row.leased_until) == ("queued", 0, None)
    assert [c.id for c in claim(runtime, T0)] == [item.id]


def test_bounce_and_row_removal_commit_together(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    """If the transaction fails after give_up, neither the bounce nor the removal survives."""
    add(runtime, mail_from="alice@example.test")
    [item] = claim(runtime, T0)
    failure = dsn.Failure("5.1.1", "smtp", "550 5.1.1 no such user")

    class Boom(Exception):
        pass

    with pytest.raises(Boom), db.transaction(runtime.sessions) as session:
        assert outbound.give_up(session, item, failure, now=T0, reporting_mta="gw") == "mailbox"
        raise Boom
    assert len(all_rows(runtime)) == 1
    with db.transaction(runtime.sessions) as session:
        assert session.scalar(sa.select(sa.func.count(MailboxMessage.id))) == 0

    with db.transaction(runtime.sessions) as session:
        assert outbound.give_up(session, item, failure, now=T0, reporting_mta="gw") == "mailbox"
    assert all_rows(runtime) == []
    with db.transaction(runtime.sessions) as session:
        [bounce] = session.scalars(sa.select(MailboxMessage)).all()
        assert bounce.address.address == "alice@example.test"
        assert bounce.queue_id == "Q0"


def test_admin_retry_and_delete(runtime: Runtime) -> None:
    add(runtime, 2)
    relay = RelaySettings()
    [first, second] = claim(runtime, T0)
    with db.transaction(runtime.sessions) as session:
        outbound.defer(session, first, error="451", now=T0, relay=relay)
    now = T0 + dt.timedelta(seconds=5)
    with db.transaction(runtime.sessions) as session:
        [row] = outbound.retry_now(session, "Q0", now=now, actor="cli")
        assert row.next_attempt_at == now
        with pytest.raises(QueueError, match="being sent right now"):
            outbound.retry_now(session, "Q1", now=now, actor="cli")
        with pytest.raises(QueueError, match="being sent right now"):
            outbound.delete(session, str(second.id), now=now, actor="cli")
        with pytest.raises(QueueError, match="no queued message nope"):
            outbound.delete(session, "nope", now=now, actor="cli")
        outbound.delete(session, "Q0", now=now, actor="cli")
    assert [r.queue_id for r in all_rows(runtime)] == ["Q1"]
    with db.transaction(runtime.sessions) as session:
        actions = list(session.scalars(sa.select(AuditEvent.action).order_by(AuditEvent.id)))
    assert actions == ["queue.retry", "queue.delete"]
