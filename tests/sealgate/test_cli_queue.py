"""`sealgate queue list|retry|delete` through click's runner against a real database."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from click.testing import CliRunner, Result

from gateway import db
from gateway import queue as outbound
from gateway.models import AuditEvent, QueueItem
from gateway.runtime import Runtime
from gateway.timeutil import utcnow
from keystore.masterkey import ring_path
from sealgate.cli import cli

RAW = b"Subject: hello\r\n\r\nbody text that must not be listed\r\n"


def run(test_env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env=test_env)


def add(runtime: Runtime, queue_id: str, rcpt: str, now: dt.datetime) -> None:
    with db.transaction(runtime.sessions) as session:
        outbound.enqueue(
            session,
            queue_id=queue_id,
            mail_from="alice@example.test",
            rcpt_to=rcpt,
            raw=RAW,
            now=now,
        )


def rows(runtime: Runtime) -> list[QueueItem]:
    with db.transaction(runtime.sessions) as session:
        return list(session.scalars(sa.select(QueueItem).order_by(QueueItem.id)))


def test_list_shows_envelope_state_and_last_error_not_bodies(
    runtime: Runtime, test_env: dict[str, str]
) -> None:
    assert run(test_env, "queue", "list").output == "queue is empty\n"
    now = utcnow()
    add(runtime, "QA1", "carol@elsewhere.test", now)
    add(runtime, "QA1", "dave@elsewhere.test", now)
    with db.transaction(runtime.sessions) as session:
        [item, _] = outbound.claim(session, now=now, lease_seconds=600, limit=2)
        outbound.defer(
            session, item, error="451 4.3.0 try later", now=now, relay=runtime.settings.relay
        )
    result = run(test_env, "queue", "list")
    assert result.exit_code == 0, result.output
    # No smarthost in these settings: said on stderr, before the rows on stdout.
    assert result.stderr.startswith("no smarthost is configured ([relay] host is empty)")
    lines = result.stdout.splitlines()
    assert lines[0].startswith("QA1\t#")
    assert "\tqueued\tattempts 1\t" in lines[0]
    assert "alice@example.test -> carol@elsewhere.test" in lines[0]
    assert lines[1] == "\tlast error: 451 4.3.0 try later"
    assert "\tsending\tattempts 0\t" in lines[2] and "dave@elsewhere.test" in lines[2]
    assert lines[-1] == "2 row(s) queued"
    assert "body text" not in result.output


def test_retry_makes_rows_due_now(runtime: Runtime, test_env: dict[str, str]) -> None:
    past = utcnow() - dt.timedelta(minutes=1)
    add(runtime, "QB1", "carol@elsewhere.test", past)
    with db.transaction(runtime.sessions) as session:
        [item] = outbound.claim(session, now=past, lease_seconds=1, limit=1)
        outbound.defer(session, item, error="451", now=past, relay=runtime.settings.relay)
    assert rows(runtime)[0].next_attempt_at > utcnow()
    result = run(test_env, "queue", "retry", "QB1")
    assert result.exit_code == 0, result.output
    assert result.output == "QB1 to carol@elsewhere.test: due now\n"
    [row] = rows(runtime)
    assert row.next_attempt_at <= utcnow() and row.status == "queued"
    assert row.attempts == 1


def test_delete_by_queue_id_or_row_number_is_audited(
    runtime: Runtime, test_env: dict[str, str]
) -> None:
    now = utcnow()
    add(runtime, "QC1", "carol@elsewhere.test", now)
    add(runtime, "QC2", "dave@elsewhere.test", now)
    add(runtime, "QC2", "erin@elsewhere.test", now)
    first = rows(runtime)[0].id
    result = run(test_env, "queue", "delete", str(first))
    assert result.exit_code == 0, result.output
    assert result.output == "QC1 to carol@elsewhere.test: deleted\n"
    result = run(test_env, "queue", "delete", "QC2")
    assert result.output.splitlines() == [
        "QC2 to dave@elsewhere.test: deleted",
        "QC2 to erin@elsewhere.test: deleted",
    ]
    assert rows(runtime) == []
    with db.transaction(runtime.sessions) as session:
        events = list(session.scalars(sa.select(AuditEvent).where(AuditEvent.actor == "cli")))
    assert [(e.action, e.target) for e in events] == [
        ("queue.delete", "carol@elsewhere.test"),
        ("queue.delete", "dave@elsewhere.test"),
        ("queue.delete", "erin@elsewhere.test"),
    ]


def test_unknown_and_in_flight_ids_are_clear_errors(
    runtime: Runtime, test_env: dict[str, str]
) -> None:
    for ident in ("NOPE", "99999999999999999999999", "2147483648", "\u0661\u0662", "0"):
        result = run(test_env, "queue", "retry", ident)
        assert result.exit_code == 1, ident
        assert result.output == f"Error: no queued message {ident}\n"
    now = utcnow()
    add(runtime, "QD1", "carol@elsewhere.test", now)
    with db.transaction(runtime.sessions) as session:
        outbound.claim(session, now=now, lease_seconds=600, limit=1)
    result = run(test_env, "queue", "delete", "QD1")
    assert result.exit_code == 1
    assert "is being sent right now" in result.output
    assert "Traceback" not in result.output
    assert len(rows(runtime)) == 1


def test_an_id_is_taken_as_queue_list_prints_it_or_in_lower_case(
    runtime: Runtime, test_env: dict[str, str]
) -> None:
    """`queue list` shows the row number as `#7`, and the help says "a row number from
    `queue list`": `retry '#7'` answered "no queued message #7". A queue id copied in
    lower case (it is hex) was not found either."""
    now = utcnow()
    add(runtime, "3D21C69A7F405E4A", "carol@elsewhere.test", now)
    add(runtime, "46A2B813D0C638D1", "dave@elsewhere.test", now)
    first = rows(runtime)[0].id
    listed = run(test_env, "queue", "list").output
    assert f"3D21C69A7F405E4A\t#{first}\t" in listed
    result = run(test_env, "queue", "retry", f"#{first}")
    assert result.exit_code == 0, result.output
    assert result.output == "3D21C69A7F405E4A to carol@elsewhere.test: due now\n"
    result = run(test_env, "queue", "delete", "46a2b813d0c638d1")
    assert result.exit_code == 0, result.output
    assert result.output == "46A2B813D0C638D1 to dave@elsewhere.test: deleted\n"
    assert [row.queue_id for row in rows(runtime)] == ["3D21C69A7F405E4A"]
    assert run(test_env, "queue", "retry", "#").output == "Error: no queued message #\n"


def test_give_up_with_a_ring_that_does_not_open_is_one_line(
    runtime: Runtime, test_env: dict[str, str]
) -> None:
    """Giving up opens a sealed row with the master key for its bounce; a ring file in a bad state
    (here: readable by others) ended `queue give-up` in a traceback, unlike every other
    command that needs the ring."""
    add(runtime, "QE1", "carol@elsewhere.test", utcnow())
    ring_path(runtime.settings.data_dir).chmod(0o644)
    result = run(test_env, "queue", "give-up", "QE1")
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and "readable by others" in result.output
    assert [row.queue_id for row in rows(runtime)] == ["QE1"]
