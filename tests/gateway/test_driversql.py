"""gateway.driversql: statements the store runs on the driver's cursor write what
SQLAlchemy's `execute` writes, fail as it fails, and stay visible to engine listeners.

The invariant, checked over generated rows on SQLite and on PostgreSQL: a row written
through `driversql.run` reads back, through the ORM, equal to the same row written
through `Connection.execute` (text of any script, control characters, bytes of any
value, dates with their time zone, booleans).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import db, driversql
from gateway.imap import folders
from gateway.models import MailLogEntry, QueueItem
from gateway.runtime import Runtime

MAIL_LOG = cast(sa.Table, MailLogEntry.__table__)
QUEUE = cast(sa.Table, QueueItem.__table__)

# What PostgreSQL's text columns take: no NUL (SQLite would, but rows must fit both).
_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
_WHEN = st.datetimes(
    min_value=dt.datetime(1970, 1, 2),
    max_value=dt.datetime(2200, 1, 1),
    timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=-11, minutes=-30))]),
)


def _queue_row(rcpt: str, raw: bytes, sealed: bool, when: dt.datetime) -> dict[str, Any]:
    return {
        "queue_id": "Q1",
        "mail_from": "a@example.test",
        "rcpt_to": rcpt,
        "raw": raw,
        "sealed": sealed,
        "status": "held",
        "attempts": 3,
        "created_at": when,
        "next_attempt_at": when,
    }


def _read(runtime: Runtime, rcpt: str) -> tuple[Any, ...]:
    with runtime.sessions() as session:
        item = session.scalars(sa.select(QueueItem).where(QueueItem.rcpt_to == rcpt)).one()
        return (
            item.mail_from,
            item.raw,
            item.sealed,
            item.status,
            item.attempts,
            item.created_at,
            item.next_attempt_at,
            item.last_error,
        )


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(raw=st.binary(max_size=2048), sealed=st.booleans(), when=_WHEN, tag=_TEXT)
def test_a_row_reads_back_as_if_written_by_execute(
    runtime: Runtime, raw: bytes, sealed: bool, when: dt.datetime, tag: str
) -> None:
    through_driver = _queue_row(f"driver-{tag}"[:300], raw, sealed, when)
    through_execute = _queue_row(f"execute-{tag}"[:300], raw, sealed, when)
    with db.transaction(runtime.sessions) as session:
        conn = session.connection()
        conn.execute(QUEUE.delete())
        driversql.run(conn, sa.insert(QUEUE), [through_driver], columns=tuple(through_driver))
        conn.execute(sa.insert(QUEUE), [through_execute])
    driver, execute = (
        _read(runtime, through_driver["rcpt_to"]),
        _read(runtime, through_execute["rcpt_to"]),
    )
    assert driver == execute
    assert driver[5] == when  # and the date is the instant given, in UTC
    assert driver[5].tzinfo == dt.UTC


def test_several_rows_go_in_one_statement_that_listeners_see(runtime: Runtime) -> None:
    seen: list[tuple[str, bool]] = []

    def watch(*args: Any) -> None:
        seen.append((args[2], args[5]))

    now = dt.datetime.now(dt.UTC)
    rows = [_queue_row(f"r{n}@x.test", bytes([n]) * 10, n % 2 == 0, now) for n in range(5)]
    sa.event.listen(runtime.engine, "before_cursor_execute", watch)
    try:
        with db.transaction(runtime.sessions) as session:
            driversql.run(session.connection(), sa.insert(QUEUE), rows, columns=tuple(rows[0]))
    finally:
        sa.event.remove(runtime.engine, "before_cursor_execute", watch)
    inserts = [(sql, many) for sql, many in seen if sql.startswith("INSERT INTO outbound_queue")]
    assert len(inserts) == 1 and inserts[0][1] is True
    with runtime.sessions() as session:
        stored = {
            rcpt: raw for rcpt, raw in session.execute(sa.select(QueueItem.rcpt_to, QueueItem.raw))
        }
    assert stored == {row["rcpt_to"]: row["raw"] for row in rows}


def test_a_column_left_out_takes_its_fixed_default(runtime: Runtime) -> None:
    row = _queue_row("d@x.test", b"x", False, dt.datetime.now(dt.UTC))
    with db.transaction(runtime.sessions) as session:
        driversql.run(session.connection(), sa.insert(QUEUE), [row], columns=tuple(row))
    assert _read(runtime, "d@x.test")[-1] == ""  # last_error's default


def test_a_column_left_out_whose_default_is_computed_is_refused(runtime: Runtime) -> None:
    """`execute` would call the model's default function; the driver path refuses
    before anything runs, naming the column, rather than write a wrong value."""
    now = dt.datetime.now(dt.UTC)
    row = {"queue_id": "Q3", "sender": "a@x.test", "recipient": "b@x.test"}
    row |= {"handling": "plain", "status": "queued", "updated_at": now}  # no created_at
    refused = pytest.raises(ValueError, match="created_at")
    with db.transaction(runtime.sessions) as session, refused:
        driversql.run(session.connection(), sa.insert(MAIL_LOG), [row], columns=tuple(row))


def test_a_driver_error_is_the_error_execute_raises_without_the_values(
    runtime: Runtime,
) -> None:
    """The same exception class as `execute` raises (the group commit's retry reads
    its SQLSTATE), with the bound values left out of the text, as the engine's
    `hide_parameters` does. (PostgreSQL's own DETAIL line may quote a failing row,
    through either path; the store logs no exception text of its own.)"""
    secret = "a value that must not reach a log"
    now = dt.datetime.now(dt.UTC)
    row = {"queue_id": "Q2", "message_id": secret, "sender": "a@x.test", "recipient": "b"}
    row |= {"handling": "plain", "status": None, "last_reply": "", "created_at": now}
    row |= {"updated_at": now}  # status is NOT NULL
    failures = []
    for write in (
        lambda conn: driversql.run(conn, sa.insert(MAIL_LOG), [row], columns=tuple(row)),
        lambda conn: conn.execute(sa.insert(MAIL_LOG), [row]),
    ):
        with pytest.raises(sa.exc.DBAPIError) as failed, db.transaction(runtime.sessions) as s:
            write(s.connection())
        failures.append(failed.value)
    driver, execute = failures
    assert type(driver) is type(execute) is sa.exc.IntegrityError
    assert type(driver.orig) is type(execute.orig)
    assert "[parameters:" not in str(driver)
    if runtime.engine.dialect.name == "sqlite":
        assert secret not in str(driver)
    with runtime.sessions() as session:  # rolled back, and the connection is usable again
        assert session.scalar(sa.select(sa.func.count()).select_from(MAIL_LOG)) == 0


def test_a_literal_in_the_statement_is_sent_with_it(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    """The UID reservation adds a literal 1 to the modseq: no caller passes it."""
    with db.transaction(runtime.sessions) as session:
        account_id = session.scalar(sa.select(sa.text("account_id FROM addresses LIMIT 1")))
        assert account_id is not None
        folders.ensure_folders(session, account_id, folders.INBOX)
        before = folders.allocate(session, account_id, folders.INBOX, 3)
        after = folders.allocate(session, account_id, folders.INBOX, 2)
    assert after == (before[0], before[1] + 3)
