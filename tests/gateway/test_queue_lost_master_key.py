"""A queued row sealed under a master-key version the ring no longer holds.

Failure: a secure-page notification waits in the outbound queue sealed under the
master key. Once its version is gone from the ring (`sealgate keys destroy-master`,
or a ring put back from an older copy) it can never be opened. Such a row was
left unclaimed and pushed back an hour at every sweep, for ever: the queue's
5-day lifetime never reached it and the sender never learnt that the mail was
lost. Now the real relay loop keeps retrying it (the admin may still put the ring
back) without a connection to the smarthost, names the missing version in its log
and in `sealgate queue list`, and at the lifetime bounces it to the sender with
what the row holds in clear (envelope, queue id, dates, the Message-ID the mail
log noted), nothing of the message itself, and without ever stopping the loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.message
import email.policy
import email.utils
import logging
import ssl
import time
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from gateway import db
from gateway import queue as outbound
from gateway.admin import queue as admin_queue
from gateway.models import AuditEvent, MailLogEntry, QueueItem
from gateway.relay import Outcome, run_relay
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer
from gateway.timeutil import utcnow
from keystore import seal
from keystore.masterkey import MasterKeyRing, load_ring, save_ring
from sealgate.cli import cli
from tests.fakes.smarthost import FakeSmarthost
from tests.gateway.test_relay import RAW, FakeClock, enqueue_sealed, rows, sweep, with_relay
from tests.gateway.test_secure_page import MARKER, PASSWORD, folder, message_with_attachment, send
from tests.keystore.conftest import run_sealgate

ALICE, CAROL, DAN = "alice@example.test", "carol@elsewhere.example", "dan@elsewhere.example"
DAY = 24 * 3600.0


def destroy_version_1(runtime: Runtime) -> MasterKeyRing:
    """Rotate to version 2 and forget version 1 in the ring file, as `keys rotate-master`
    and `keys destroy-master` leave it; the queue row stays under version 1 (sealed by a
    process that still held the old ring). Returns the ring from just before the
    destruction (version 1 decrypt-only): the copy an admin could put back."""
    before = load_ring(runtime.settings.data_dir, env={})
    assert before.primary == 1
    retired = before.with_new_primary().with_retired(1)
    save_ring(runtime.settings.data_dir, retired.with_destroyed(1))
    ring = runtime.ring.get()
    assert ring.destroyed_versions == [1] and 1 not in ring.keys
    return retired


def wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not check():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


def the_row(runtime: Runtime, rcpt: str) -> QueueItem | None:
    with db.read_only(runtime.sessions) as session:
        return session.scalar(sa.select(QueueItem).where(QueueItem.rcpt_to == rcpt))


def test_the_relay_loop_retries_it_then_bounces_it_at_the_lifetime(
    runtime: Runtime,
    mail_users: dict[str, str],
    submission_server: SubmissionServer,
    client_ssl_context: ssl.SSLContext,
    smarthost: FakeSmarthost,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    raw = message_with_attachment().as_bytes(policy=email.policy.SMTP)
    queue_id = send(submission_server, client_ssl_context, mail_users[ALICE], raw, [CAROL])
    row = the_row(runtime, CAROL)
    assert row is not None and row.sealed and seal.blob_version(row.raw) == 1
    submitted = row.created_at
    with db.transaction(runtime.sessions) as session:  # other mail keeps flowing
        outbound.enqueue(
            session, queue_id="QPLAIN", mail_from=ALICE, rcpt_to=DAN, raw=RAW, now=utcnow()
        )
    destroy_version_1(runtime)

    rt = with_relay(runtime, smarthost)
    max_age = rt.settings.relay.max_age
    assert max_age == 5 * DAY
    clock = FakeClock(utcnow())

    def attempts() -> int:
        found = the_row(rt, CAROL)
        return -1 if found is None else found.attempts

    async def scenario() -> None:
        stop = asyncio.Event()
        worker = asyncio.create_task(run_relay(rt, stop, clock))
        try:
            await asyncio.to_thread(smarthost.wait_for, 1)
            await asyncio.to_thread(wait_until, lambda: attempts() == 1, "a first try")
            # Four days on: tried again, still kept (the ring may yet come back).
            clock.advance(4 * DAY)
            await asyncio.to_thread(wait_until, lambda: attempts() == 2, "a second try")
            # Past the lifetime: the next try bounces it.
            clock.advance(DAY + 1)
            await asyncio.to_thread(wait_until, lambda: attempts() == -1, "the bounce")
        finally:
            stop.set()
            await worker  # ends normally: the loop never failed

    asyncio.run(scenario())

    # Nothing of the notification reached the smarthost; the other mail did.
    [sent] = smarthost.messages
    assert sent.rcpt_tos == (DAN,) and sent.content == RAW

    [bounce] = folder(runtime, ALICE)
    assert bounce.envelope_from == ""
    msg = email.message_from_bytes(bounce.raw, policy=email.policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    assert msg["To"].addresses[0].addr_spec == ALICE
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    human, status = list(msg.iter_parts())  # no third part: there is nothing to return
    assert status.get_content_type() == "message/delivery-status"
    per_message, per_recipient = status.get_payload()  # type: ignore[misc]
    assert per_message["X-Sealgate-Queue-ID"] == queue_id
    assert email.utils.parsedate_to_datetime(per_message["Arrival-Date"]) == submitted.replace(
        microsecond=0
    )
    assert per_recipient["Final-Recipient"] == f"rfc822; {CAROL}"
    assert (per_recipient["Action"], per_recipient["Status"]) == ("failed", "4.4.7")
    assert per_recipient["Diagnostic-Code"] == (
        "X-Sealgate; sealed at rest under master-key version 1, which was destroyed"
    )
    assert per_recipient["Remote-MTA"] is None  # it never went to the smarthost
    text = human.get_content()
    assert f"could not be delivered to {CAROL}" in text
    assert f"Queue id: {queue_id}" in text
    assert "Message-ID: <secure-1@example.test>" in text
    assert "can no longer open its stored copy" in text
    for secret in (MARKER, PASSWORD, "Vertrag", "/s/"):
        assert secret.encode() not in bounce.raw

    with db.read_only(runtime.sessions) as session:
        logged = session.scalar(sa.select(MailLogEntry).where(MailLogEntry.recipient == CAROL))
        assert logged is not None and logged.status == "bounced"
        [event] = session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "relay.bounce"))
        assert (event.target, event.success) == (ALICE, False)

    # The admin was told which version is missing, and what happens next.
    deferred = [r.getMessage() for r in caplog.records if "deferred until" in r.getMessage()]
    assert len(deferred) == 2
    assert all(
        f"queue {queue_id} to {CAROL}" in line
        and "master-key version 1, which was destroyed" in line
        and "bounces to its sender" in line
        for line in deferred
    )
    assert f"queue {queue_id} to {CAROL}: giving up after 3 attempts" in caplog.text
    assert "sweep failed" not in caplog.text and "unexpected error" not in caplog.text
    for secret in (MARKER, PASSWORD):
        assert secret not in caplog.text


def test_it_is_sent_once_the_ring_holds_its_version_again(
    runtime: Runtime, smarthost: FakeSmarthost, test_env: dict[str, str]
) -> None:
    """Retrying rather than bouncing at once: the admin may put the ring back."""
    rt = with_relay(runtime, smarthost)
    enqueue_sealed(rt, rt.ring.get(), queue_id="QSEALED")
    before = destroy_version_1(rt)
    clock = FakeClock()  # the row's own time

    listing = CliRunner(env=test_env).invoke(cli, ["queue", "list"])
    assert listing.exit_code == 0, listing.output
    assert "cannot be opened: sealed at rest under master-key version 1, which was destroyed" in (
        listing.output
    )
    [row] = rows(rt)
    expires = row.created_at + dt.timedelta(seconds=rt.settings.relay.max_age)
    assert f"it bounces without its content at {expires:%Y-%m-%d %H:%M:%S} UTC" in listing.output

    assert [r.outcome for r in sweep(rt, clock)] == [Outcome.DEFERRED]
    [row] = rows(rt)
    assert (row.status, row.attempts) == ("queued", 1)
    assert row.last_error == "sealed at rest under master-key version 1, which was destroyed"
    assert smarthost.messages == []

    save_ring(rt.settings.data_dir, before)  # the copy from before the destruction
    assert "cannot be opened" not in CliRunner(env=test_env).invoke(cli, ["queue", "list"]).output
    clock.advance(DAY)
    assert [r.outcome for r in sweep(rt, clock)] == [Outcome.SENT]
    assert [m.content for m in smarthost.messages] == [RAW]
    assert rows(rt) == []


def test_a_ring_that_never_held_the_version_is_named_as_such(
    runtime: Runtime, smarthost: FakeSmarthost
) -> None:
    """A ring put back from an older copy lacks the newer version: not "destroyed"."""
    rt = with_relay(runtime, smarthost)
    newer = MasterKeyRing(primary=7, keys={7: bytes(range(32))})
    enqueue_sealed(rt, newer)
    assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.DEFERRED]
    [row] = rows(rt)
    assert row.last_error == (
        "sealed at rest under master-key version 7, which the key ring does not hold"
    )


def test_the_admin_console_lists_it(runtime: Runtime) -> None:
    rt = runtime
    enqueue_sealed(rt, rt.ring.get(), queue_id="QSEALED")
    destroy_version_1(rt)
    with db.read_only(rt.sessions) as session:
        page = admin_queue.list_rows(session, utcnow(), 1, 50, ring=rt.ring.get())
    [shown] = page.items
    assert shown.as_dict()["unopenable"] == (
        "sealed at rest under master-key version 1, which was destroyed"
    )


def test_a_later_master_key_rotation_leaves_it_and_finishes(
    runtime: Runtime, smarthost: FakeSmarthost, test_env: dict[str, str]
) -> None:
    """The rotation re-seals queued rows; one that cannot be opened stopped it with a
    traceback (SealedRecordError) until the row was gone."""
    enqueue_sealed(runtime, runtime.ring.get(), queue_id="QSEALED")
    destroy_version_1(runtime)
    rotated = run_sealgate(test_env, "keys", "rotate-master")
    assert rotated.returncode == 0, rotated.stderr
    assert "Traceback" not in rotated.stderr
    # The summary says it was left (it said "every secret key is wrapped" before).
    assert "wrapped under version 3 except 1 record(s) that cannot be opened" in rotated.stdout
    assert "skipped: the queued notification QSEALED to " in rotated.stderr
    [row] = rows(runtime)
    assert seal.blob_version(row.raw) == 1  # left as it was, to bounce at the lifetime
    rt = with_relay(runtime, smarthost)
    assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.DEFERRED]
