"""The outbound relay against a real SMTP smarthost (aiosmtpd, STARTTLS with a throwaway CA).

Threats and failures covered: sending in clear or to an unverified server when
STARTTLS is required, losing mail while the relay is down, sending it twice,
retrying a permanent failure, bouncing a bounce, and leaking the relay password.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import dataclasses
import datetime as dt
import email
import email.message
import logging
import random
import socket
from collections.abc import Iterator
from email.policy import default as default_policy
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway import db, relay
from gateway import queue as outbound
from gateway.master_records import rewrap as rewrap_gateway_records
from gateway.models import AuditEvent, MailboxMessage, QueueItem
from gateway.relay import Outcome, Relay, run_relay
from gateway.runtime import Runtime
from gateway.settings import LEASE_SHARE, RelaySettings, SettingsError, load_settings
from gateway.transport import sevenbit
from keystore import seal
from keystore.masterkey import MasterKeyRing
from tests.fakes.rogue_smtp import RogueSmtp
from tests.fakes.smarthost import FakeSmarthost, SmarthostFactory, relay_settings_for
from tests.gateway.test_sevenbit import leaves as decoded_leaves
from tests.gateway.test_sevenbit import messages as any_messages
from tests.gateway.test_sevenbit import valid_for

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
ALICE = "alice@example.test"
CAROL = "carol@elsewhere.test"
RAW = (
    b"From: Alice <alice@example.test>\r\n"
    b"To: carol@elsewhere.test\r\n"
    b"Subject: quarterly numbers\r\n"
    b"Message-ID: <q1@example.test>\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b".a line that starts with a dot\r\n"
    b"From the desk of Alice\r\n"
    b"Gr\xc3\xbc\xc3\x9fe, secret body text\r\n"
)


class FakeClock:
    def __init__(self, now: dt.datetime = T0) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def with_relay(runtime: Runtime, smarthost: FakeSmarthost, **relay_keys: object) -> Runtime:
    return dataclasses.replace(
        runtime, settings=relay_settings_for(runtime.settings, smarthost, **relay_keys)
    )


def enqueue(
    runtime: Runtime,
    *,
    mail_from: str = ALICE,
    rcpt_to: str = CAROL,
    raw: bytes = RAW,
    queue_id: str = "Q1",
    now: dt.datetime = T0,
) -> int:
    with db.transaction(runtime.sessions) as session:
        item = outbound.enqueue(
            session, queue_id=queue_id, mail_from=mail_from, rcpt_to=rcpt_to, raw=raw, now=now
        )
        session.flush()
        return item.id


def rows(runtime: Runtime) -> list[QueueItem]:
    with db.transaction(runtime.sessions) as session:
        return list(session.scalars(sa.select(QueueItem).order_by(QueueItem.id)))


def mailbox_of(runtime: Runtime, address: str) -> list[MailboxMessage]:
    with db.transaction(runtime.sessions) as session:
        return [
            m
            for m in session.scalars(sa.select(MailboxMessage).order_by(MailboxMessage.id))
            if m.address.address == address
        ]


def audit_actions(runtime: Runtime) -> list[AuditEvent]:
    with db.transaction(runtime.sessions) as session:
        return list(session.scalars(sa.select(AuditEvent).where(AuditEvent.actor == "relay")))


def sweep(runtime: Runtime, clock: FakeClock, **kwargs: object) -> list[relay.Result]:
    return asyncio.run(Relay(runtime, clock=clock, **kwargs).sweep())  # type: ignore[arg-type]


def delivery_status(
    report: bytes,
) -> tuple[email.message.EmailMessage, list[email.message.Message]]:
    msg = email.message_from_bytes(report, policy=default_policy)
    assert isinstance(msg, email.message.EmailMessage)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == [
        "text/plain",
        "message/delivery-status",
        "text/rfc822-headers",
    ]
    blocks = parts[1].get_payload()
    assert isinstance(blocks, list) and len(blocks) == 2
    return msg, blocks


# -- delivery --------------------------------------------------------------------


def test_external_delivery_sends_exact_bytes_over_starttls(
    runtime: Runtime, smarthost: FakeSmarthost
) -> None:
    """The worker loop empties the queue; the smarthost gets the raw bytes and envelope."""
    rt = with_relay(runtime, smarthost)
    enqueue(rt, now=dt.datetime.now(dt.UTC))

    async def scenario() -> None:
        stop = asyncio.Event()
        worker = asyncio.create_task(run_relay(rt, stop, rng=random.Random(1)))
        for _ in range(400):
            if not await asyncio.to_thread(rows, rt):
                break
            await asyncio.sleep(0.025)
        stop.set()
        await worker

    asyncio.run(scenario())
    assert rows(rt) == []
    [msg] = smarthost.messages
    assert msg.content == RAW
    assert msg.mail_from == ALICE
    assert msg.rcpt_tos == (CAROL,)
    assert msg.tls is True
    assert "BODY=8BITMIME" in msg.mail_options


def test_relay_down_defers_then_delivers_exactly_once(
    runtime: Runtime, smarthost: FakeSmarthost
) -> None:
    rt = with_relay(runtime, smarthost, first_retry=300.0, max_retry_interval=3600.0)
    clock = FakeClock()
    enqueue(rt)
    smarthost.stop()

    assert [r.outcome for r in sweep(rt, clock)] == [Outcome.DEFERRED]
    [row] = rows(rt)
    assert (row.status, row.attempts, row.leased_until) == ("queued", 1, None)
    assert row.next_attempt_at == T0 + dt.timedelta(seconds=300)
    assert "connection to relay" in row.last_error

    clock.advance(299)
    assert sweep(rt, clock) == []  # not due yet: nothing is even tried

    clock.advance(1)
    assert [r.outcome for r in sweep(rt, clock)] == [Outcome.DEFERRED]
    [row] = rows(rt)
    assert row.attempts == 2
    assert row.next_attempt_at == clock.now + dt.timedelta(seconds=600)

    smarthost.start()
    clock.advance(600)
    assert [r.outcome for r in sweep(rt, clock)] == [Outcome.SENT]
    clock.advance(3600)
    assert sweep(rt, clock) == []
    assert rows(rt) == []
    assert [m.content for m in smarthost.messages] == [RAW]


@pytest.mark.parametrize("stage", ["mail", "rcpt", "data"])
def test_temporary_reply_defers(runtime: Runtime, smarthost: FakeSmarthost, stage: str) -> None:
    rt = with_relay(runtime, smarthost)
    enqueue(rt)
    smarthost.fail(stage, 451)  # type: ignore[arg-type]
    assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.DEFERRED]
    [row] = rows(rt)
    assert row.attempts == 1
    assert row.last_error.startswith("451 4.3.0")
    assert smarthost.messages == []


def test_past_max_age_bounces_to_sender_mailbox(
    runtime: Runtime, mail_users: dict[str, str], smarthost: FakeSmarthost
) -> None:
    """Must show 3: past the maximum age a DSN reaches the sender's mailbox, the queue empties."""
    rt = with_relay(runtime, smarthost, max_age=5 * 24 * 3600.0)
    clock = FakeClock()
    enqueue(rt)
    smarthost.fail("rcpt", 451)

    assert [r.outcome for r in sweep(rt, clock)] == [Outcome.DEFERRED]
    clock.advance(5 * 24 * 3600)
    assert [r.outcome for r in sweep(rt, clock)] == [Outcome.BOUNCED]

    assert rows(rt) == []
    [bounce] = mailbox_of(rt, ALICE)
    assert bounce.envelope_from == ""
    assert bounce.subject == "Undelivered Mail Returned to Sender"
    msg, (per_message, per_recipient) = delivery_status(bounce.raw)
    assert msg["To"].addresses[0].addr_spec == ALICE
    assert per_message["Reporting-MTA"] == f"dns; {rt.settings.smtp.hostname}"
    assert per_recipient["Final-Recipient"] == f"rfc822; {CAROL}"
    assert per_recipient["Action"] == "failed"
    assert per_recipient["Status"] == "4.4.7"
    assert per_recipient["Diagnostic-Code"].startswith("smtp; 451 4.3.0")
    headers = list(msg.iter_parts())[2].get_content()
    assert "Subject: quarterly numbers" in headers
    assert b"secret body text" not in bounce.raw
    assert [e.action for e in audit_actions(rt)] == ["relay.bounce"]


@pytest.mark.parametrize(
    ("stage", "code", "status"),
    [("rcpt", 550, "5.1.1"), ("data", 554, "5.7.1"), ("mail", 553, "5.1.3")],
)
def test_permanent_reply_bounces_at_once(
    runtime: Runtime,
    mail_users: dict[str, str],
    smarthost: FakeSmarthost,
    stage: str,
    code: int,
    status: str,
) -> None:
    rt = with_relay(runtime, smarthost)
    enqueue(rt)
    smarthost.fail(stage, code)  # type: ignore[arg-type]
    assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.BOUNCED]
    assert rows(rt) == []
    [bounce] = mailbox_of(rt, ALICE)
    _msg, (_per_message, per_recipient) = delivery_status(bounce.raw)
    assert per_recipient["Status"] == status
    assert per_recipient["Diagnostic-Code"].startswith(f"smtp; {code} {status}")
    assert per_recipient["Remote-MTA"] == f"dns; [{smarthost.host}]"
    assert smarthost.messages == []


def test_remote_mta_names_the_host_and_gives_its_address_in_a_comment(
    runtime: Runtime, mail_users: dict[str, str], smarthost: FakeSmarthost
) -> None:
    """RFC 3464 2.3.5: the "dns" type takes a host name. The DSN said `dns; 127.0.0.1`
    whatever the relay was; now the name we connected to, and its address aside."""
    rt = with_relay(runtime, smarthost, host="localhost")
    enqueue(rt)
    smarthost.fail("rcpt", 550)
    assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.BOUNCED]
    [bounce] = mailbox_of(rt, ALICE)
    _msg, (_per_message, per_recipient) = delivery_status(bounce.raw)
    assert per_recipient["Remote-MTA"] == f"dns; localhost ({smarthost.host})"


def test_bounce_for_sender_not_hosted_is_dropped_with_audit(
    runtime: Runtime, mail_users: dict[str, str], smarthost: FakeSmarthost
) -> None:
    rt = with_relay(runtime, smarthost)
    enqueue(rt, mail_from="someone@elsewhere.test")
    smarthost.fail("rcpt", 550)
    assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.BOUNCED]
    assert rows(rt) == []
    assert mailbox_of(rt, ALICE) == [] and mailbox_of(rt, "bob@example.test") == []
    [event] = audit_actions(rt)
    assert (event.action, event.target, event.success) == (
        "relay.bounce_dropped",
        "someone@elsewhere.test",
        False,
    )
    assert "sender not hosted" in event.detail


def test_a_bounce_is_never_bounced(
    runtime: Runtime,
    mail_users: dict[str, str],
    smarthost: FakeSmarthost,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rt = with_relay(runtime, smarthost)
    enqueue(rt, mail_from="")
    smarthost.fail("rcpt", 550)
    caplog.set_level(logging.INFO)
    assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.BOUNCED]
    assert rows(rt) == []
    with db.transaction(rt.sessions) as session:
        assert session.scalar(sa.select(sa.func.count(MailboxMessage.id))) == 0
    [event] = audit_actions(rt)
    assert event.action == "relay.bounce_dropped" and "null sender" in event.detail
    # The log says why as the audit does (it said "sender not hosted" for <> too).
    assert "bounce dropped (null sender)" in caplog.text


def test_null_sender_is_delivered_with_empty_mail_from(
    runtime: Runtime, smarthost: FakeSmarthost
) -> None:
    rt = with_relay(runtime, smarthost)
    enqueue(rt, mail_from="")
    assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.SENT]
    [msg] = smarthost.messages
    assert msg.mail_from == "<>" and msg.content == RAW  # aiosmtpd keeps the brackets


@pytest.mark.parametrize(
    ("mail_from", "rcpt_to"),
    [
        (ALICE, '"a\x01b"@elsewhere.test'),  # an outside envelope sender, answered
        (ALICE, '"a\x7fb"@elsewhere.test'),
        (ALICE, '"\\"@elsewhere.test>'),  # what aiosmtpd made of MAIL FROM:<"\"@x>
        ('"a\x01b"@example.test', CAROL),
    ],
    ids=["control-char", "del", "broken-quote", "sender"],
)
def test_an_address_smtp_cannot_carry_bounces_at_once_without_a_traceback(
    runtime: Runtime,
    mail_users: dict[str, str],
    smarthost: FakeSmarthost,
    caplog: pytest.LogCaptureFixture,
    mail_from: str,
    rcpt_to: str,
) -> None:
    """Inbound SMTP takes envelope senders that the relay's client refuses to write
    (control characters in a quoted local part); an automatic reply to one was an
    "unexpected error" with a traceback at every try, retried for five days."""
    rt = with_relay(runtime, smarthost)
    enqueue(rt, mail_from=mail_from, rcpt_to=rcpt_to)
    caplog.set_level(logging.INFO)
    assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.BOUNCED]
    assert rows(rt) == []
    assert "Traceback" not in caplog.text and "unexpected error" not in caplog.text
    assert smarthost.messages == []
    if mail_from == ALICE:
        [bounce] = mailbox_of(rt, ALICE)
        _msg, (_per_message, per_recipient) = delivery_status(bounce.raw)
        assert per_recipient["Status"] == "5.1.3"


def test_a_slow_final_reply_is_waited_for_not_sent_twice(
    runtime: Runtime, smarthost: FakeSmarthost
) -> None:
    """RFC 5321 4.5.3.2.6: after the final dot the client waits up to 10 minutes. The
    relay waited one step's `timeout` (plus a second per 64 KiB), so a receiver that
    scanned the content before answering had accepted the mail when we gave up, and
    the retry delivered it a second time."""
    rt = with_relay(runtime, smarthost, timeout=1.0, data_done_timeout=30.0)
    enqueue(rt)
    smarthost.delay("data", 2.5)  # the content scanner: longer than any other step
    assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.SENT]
    assert [m.content for m in smarthost.messages] == [RAW]
    assert rows(rt) == []


def test_each_stage_has_its_own_timeout(runtime: Runtime, smarthost: FakeSmarthost) -> None:
    """MAIL, RCPT and the end of DATA each give up after their own setting."""
    rt = with_relay(runtime, smarthost, data_done_timeout=0.5)
    enqueue(rt)
    smarthost.delay("data", 3.0)
    assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.DEFERRED]
    [row] = rows(rt)
    assert "no reply within 0.5 s after the end of the data" in row.last_error

    smarthost.delay("data", 0)
    smarthost.delay("rcpt", 3.0)
    rt = with_relay(runtime, smarthost, rcpt_timeout=0.5)
    assert [r.outcome for r in sweep(rt, FakeClock(T0 + dt.timedelta(days=1)))] == [
        Outcome.DEFERRED
    ]
    [row] = rows(rt)
    assert row.last_error.startswith("timed out talking to the relay")


@pytest.fixture
def unanswering_port() -> Iterator[int]:
    """A port whose listener's backlog is full: a new connection's SYN goes unanswered,
    as a host that is down behind a firewall leaves it (nothing outside this machine)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    waiting = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        waiting.append(filler)
    yield port
    for filler in waiting:
        filler.close()
    listener.close()


def test_a_host_that_never_answers_is_given_up_on_after_the_connect_timeout(
    runtime: Runtime, smarthost: FakeSmarthost, unanswering_port: int
) -> None:
    """The greeting's 5 minutes start once the connection is made: aiosmtplib's one
    timeout for both held a delivery to a dead host for 5 minutes."""
    rt = with_relay(
        runtime, smarthost, port=unanswering_port, connect_timeout=0.5, greeting_timeout=300
    )
    enqueue(rt)
    assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.DEFERRED]
    [row] = rows(rt)
    assert row.last_error == (
        f"connection to relay 127.0.0.1:{unanswering_port} failed: no answer within 0.5 s"
    )


def test_a_large_message_travels_whole(runtime: Runtime, smarthost: FakeSmarthost) -> None:
    """The transfer has its own (per block) timeout, not one step's for all of it."""
    rt = with_relay(runtime, smarthost, timeout=1.0)
    big = RAW + (b"x" * 76 + b"\r\n") * 13_800  # about 1 MiB
    enqueue(rt, raw=big)
    assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.SENT]
    [msg] = smarthost.messages
    assert msg.content == big


def test_the_timeouts_default_to_rfc_5321s() -> None:
    """RFC 5321 4.5.3.2: 5 min for the greeting, MAIL and RCPT, 2 for DATA, 3 per data
    block, 10 for the reply after the final dot; the lease outlasts all of them."""
    relay_settings = RelaySettings()
    assert (
        relay_settings.greeting_timeout,
        relay_settings.mail_timeout,
        relay_settings.rcpt_timeout,
        relay_settings.data_init_timeout,
        relay_settings.data_block_timeout,
        relay_settings.data_done_timeout,
    ) == (300, 300, 300, 120, 180, 600)
    assert relay_settings.lease_seconds * LEASE_SHARE >= relay_settings.longest_attempt()


def test_a_lease_shorter_than_the_timeouts_is_refused(tmp_path: Path) -> None:
    """A delivery cut off by its lease would be tried again while the peer may still
    accept the first: the settings must not allow it."""
    with pytest.raises(SettingsError, match="lease_seconds"):
        load_settings(tmp_path, env={"SEALGATE_RELAY_LEASE_SECONDS": "600"})


@pytest.mark.parametrize(
    ("stage", "style"), [("EHLO", "line"), ("MAIL", "lines"), ("RCPT", "line"), ("DATA", "lines")]
)
def test_an_endless_reply_is_a_protocol_error_retried_then_bounced(
    runtime: Runtime, mail_users: dict[str, str], stage: str, style: str
) -> None:
    """A hostile or broken peer's reply that never ends (one endless line, or
    continuation lines without a last one): the attempt stops at 32 KiB, the row is
    deferred with a short, plain reason (it said "-1 Response too long"), and bounced
    after `max_age` like any temporary failure (what Postfix does)."""
    rogue = RogueSmtp(endless_at=stage, style=style)  # type: ignore[arg-type]
    try:
        rt = dataclasses.replace(
            runtime,
            settings=runtime.settings.replace(
                relay={"host": rogue.host, "port": rogue.port, "security": "none"}
            ),
        )
        clock = FakeClock()
        enqueue(rt)
        assert [r.outcome for r in sweep(rt, clock)] == [Outcome.DEFERRED]
        assert rogue.closed.wait(10)
        [row] = rows(rt)
        assert row.last_error == (
            f"protocol error: relay {rogue.host}:{rogue.port} sent a reply longer than"
            " 32 KiB (or a line over 8 KiB)"
        )
        clock.advance(rt.settings.relay.max_age)
        assert [r.outcome for r in sweep(rt, clock)] == [Outcome.BOUNCED]
        [bounce] = mailbox_of(rt, ALICE)
        _msg, (_per_message, per_recipient) = delivery_status(bounce.raw)
        assert per_recipient["Status"] == "4.4.7"
        assert per_recipient["Diagnostic-Code"].startswith("X-Sealgate; protocol error: relay")
    finally:
        rogue.close()


ODD_LINES = (
    b"From: alice@example.test\r\nSubject: odd lines\r\n\r\n"
    b".\r\n"  # a line of a single dot: not the end of the data
    b"..two dots\r\n"
    b".one dot\r\n"
    b"a bare\rCR\r\n"
    b"a bare\nLF\r\n"
    b"caf\xc3\xa9\r\n"
    b"."  # the last line: a dot, and no line end
)


def test_odd_lines_reach_the_smarthost_as_stored(
    runtime: Runtime, smarthost: FakeSmarthost
) -> None:
    """Dot-stuffing is undone at the other end; a bare CR or LF is a line end (CRLF) on
    the wire, as SMTP has no other; a last line without one gets one."""
    rt = with_relay(runtime, smarthost)
    enqueue(rt, raw=ODD_LINES)
    assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.SENT]
    [msg] = smarthost.messages
    assert msg.content == relay.wire_form(ODD_LINES)
    assert msg.content.endswith(b"caf\xc3\xa9\r\n.\r\n")
    assert "BODY=8BITMIME" in msg.mail_options


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.lists(
        st.sampled_from([b".", b"..", b"x", b"\r", b"\n", b"\r\n", b"\xe9", b" "]),
        max_size=40,
    ).map(b"".join)
)
def test_any_body_reaches_the_smarthost_as_stored(
    runtime: Runtime, smarthost_factory: SmarthostFactory, body: bytes
) -> None:
    """Whatever the bytes (a NUL aside: it is converted, see below), the smarthost
    receives the stored message with only its line ends made CRLF (and a last one
    added): DATA's dot-stuffing is invisible."""
    peer = smarthost_factory()
    rt = with_relay(runtime, peer)
    with db.transaction(rt.sessions) as session:
        session.execute(sa.delete(QueueItem))
    raw = b"From: alice@example.test\r\nSubject: any\r\n\r\n" + body
    enqueue(rt, raw=raw)
    assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.SENT]
    [msg] = peer.messages
    assert msg.content == relay.wire_form(raw)


def test_utf8_in_the_header_fields_is_declared_with_smtputf8(
    runtime: Runtime, smarthost: FakeSmarthost
) -> None:
    """RFC 6532 3 / RFC 6531 3.4: UTF-8 in header fields travels only with SMTPUTF8. The
    relay declared it for a UTF-8 envelope only, so an EAI message (a raw UTF-8
    Subject or display name) went out as if it were legacy 8-bit mail."""
    rt = with_relay(runtime, smarthost)
    eai = "From: Jörg <alice@example.test>\r\nSubject: Grüße\r\n\r\nhallo\r\n".encode()
    enqueue(rt, raw=eai)
    enqueue(rt, queue_id="Q2")  # RAW: 8-bit body, ASCII headers
    assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.SENT, Outcome.SENT]
    by_body = {m.content: m.mail_options for m in smarthost.messages}
    assert "SMTPUTF8" in by_body[eai]
    assert "SMTPUTF8" not in by_body[RAW] and "BODY=8BITMIME" in by_body[RAW]


MIXED = (
    b"From: Alice <alice@example.test>\r\n"
    b"To: carol@elsewhere.test\r\n"
    b"Subject: figures\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n'
    b"\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Gr\xc3\xbc\xc3\x9fe = 1 \r\n"
    b".a line that starts with a dot\r\n"
    b"--b1\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: binary\r\n"
    b"\r\n"
    b"\x01\xff\xfe\x80 raw\r\n"
    b"--b1--\r\n"
)


def leaves(raw: bytes) -> list[tuple[str, bytes]]:
    msg = email.message_from_bytes(raw, policy=default_policy)
    assert not msg.defects
    found = []
    for part in msg.walk():
        if not part.is_multipart():
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            found.append((part.get_content_type(), payload))
    return found


@pytest.mark.parametrize("raw", [RAW, MIXED])
def test_8bit_mail_to_a_relay_without_8bitmime_is_converted_to_7bit(
    runtime: Runtime, smarthost_factory: SmarthostFactory, raw: bytes
) -> None:
    """RFC 6152 3: 8-bit mail goes to a server without 8BITMIME only converted (or not at
    all). It went unconverted; now each 8-bit part is quoted-printable or base64, and
    the parts decode to the same bytes."""
    old_mta = smarthost_factory(withhold=("8BITMIME",))
    rt = with_relay(runtime, old_mta)
    enqueue(rt, raw=raw)
    assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.SENT]
    [msg] = old_mta.messages
    assert msg.content.isascii()
    assert "BODY=8BITMIME" not in msg.mail_options
    assert leaves(msg.content) == leaves(raw)
    assert b"Content-Transfer-Encoding: quoted-printable\r\n" in msg.content


def test_8bit_header_fields_to_a_7bit_relay_become_encoded_words_or_bounce(
    runtime: Runtime, mail_users: dict[str, str], smarthost_factory: SmarthostFactory
) -> None:
    """RFC 6152 3 holds for header bytes too. Legacy 8-bit header fields (not UTF-8)
    and 8-bit part headers went to a server without 8BITMIME unchanged; now they are
    RFC 2047 / RFC 2231 encoded, and what cannot be (an 8-bit address) is returned
    with 5.6.7 instead of being sent."""
    old_mta = smarthost_factory(withhold=("8BITMIME", "SMTPUTF8"))
    rt = with_relay(runtime, old_mta)
    legacy = b"From: J\xf6rg <alice@example.test>\r\nSubject: caf\xe9\r\n\r\nhallo\r\n"
    part = MIXED.replace(
        b"Content-Type: application/octet-stream\r\n",
        (b'Content-Type: application/octet-stream; name="Gr\xc3\xbc\xc3\x9fe.bin"\r\n'),
    )
    enqueue(rt, raw=legacy)
    enqueue(rt, raw=part, queue_id="Q2")
    enqueue(rt, raw=b"To: j\xf6rg@elsewhere.test\r\n\r\nhallo\r\n", queue_id="Q3")
    outcomes = [r.outcome for r in sweep(rt, FakeClock())]
    assert outcomes == [Outcome.SENT, Outcome.SENT, Outcome.BOUNCED]
    assert all(m.content.isascii() for m in old_mta.messages)
    assert len(old_mta.messages) == 2
    by_subject = {email.message_from_bytes(m.content)["Subject"]: m for m in old_mta.messages}
    assert (
        b"Subject: =?unknown-8bit?q?caf=E9?=\r\n" in by_subject["=?unknown-8bit?q?caf=E9?="].content
    )
    [bounce] = mailbox_of(rt, ALICE)
    _msg, (_per_message, per_recipient) = delivery_status(bounce.raw)
    assert per_recipient["Status"] == "5.6.7"


@pytest.mark.parametrize(
    "raw",
    [
        RAW.replace(b"secret body text", b"secret \x00 body text"),
        RAW + b"a long line: " + b"0123456789" * 120 + b"\r\n",
        RAW + b"Gr\xc3\xbc\xc3\x9fe " * 400 + b"\r\n",
    ],
    ids=["nul", "overlong-ascii", "overlong-8bit"],
)
def test_what_8bitmime_does_not_allow_is_converted_for_an_8bitmime_relay(
    runtime: Runtime, smarthost: FakeSmarthost, raw: bytes
) -> None:
    """RFC 6152 2: 8bit data is lines of at most 998 octets without a NUL. A NUL or an
    overlong line went unchanged to a relay with 8BITMIME, which may refuse it (this
    one, aiosmtpd, answers an overlong line with 500: the mail bounced); now the part
    becomes quoted-printable, as for a 7-bit relay, and decodes to the same bytes."""
    rt = with_relay(runtime, smarthost)
    enqueue(rt, raw=raw)
    assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.SENT]
    [msg] = smarthost.messages
    assert valid_for(msg.content, eightbit=True)
    assert b"Content-Transfer-Encoding: quoted-printable\r\n" in msg.content
    assert leaves(msg.content) == leaves(raw)


def test_only_the_part_8bitmime_does_not_allow_is_converted(
    runtime: Runtime, smarthost: FakeSmarthost
) -> None:
    """A NUL in the binary part of MIXED makes that part base64; its 8-bit text part
    is valid 8bit data and leaves byte for byte, declared with BODY=8BITMIME."""
    raw = MIXED.replace(b"\x01\xff\xfe\x80 raw", b"\x01\xff\x00\x80 raw")
    rt = with_relay(runtime, smarthost)
    enqueue(rt, raw=raw)
    assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.SENT]
    [msg] = smarthost.messages
    assert valid_for(msg.content, eightbit=True)
    assert "BODY=8BITMIME" in msg.mail_options
    assert b"Gr\xc3\xbc\xc3\x9fe = 1 \r\n" in msg.content
    assert b"Content-Transfer-Encoding: base64\r\n" in msg.content
    assert leaves(msg.content) == leaves(raw)


def test_a_nul_in_a_header_field_is_a_space_for_an_8bitmime_relay(
    runtime: Runtime, smarthost: FakeSmarthost
) -> None:
    """No header field holds a NUL (RFC 5322 2.2); the field went as it was."""
    raw = RAW.replace(b"Subject: quarterly numbers", b"Subject: quarterly\x00numbers")
    rt = with_relay(runtime, smarthost)
    enqueue(rt, raw=raw)
    assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.SENT]
    [msg] = smarthost.messages
    assert msg.content == relay.wire_form(RAW)  # the NUL a space
    assert "BODY=8BITMIME" in msg.mail_options


PREAMBLE = b"Vorspann: Gr\xc3\xbc\xc3\x9fe, caf\xe9 = 1\r\n"
EPILOGUE = b"Nachspann \xe9\r\n"


def test_an_8bit_preamble_and_epilogue_reach_a_7bit_relay_whole(
    runtime: Runtime, smarthost_factory: SmarthostFactory
) -> None:
    """They went with each 8-bit byte a "?", for good; now they are quoted-printable
    (no MIME reader decodes them, RFC 2046 5.1.1, but nothing is lost)."""
    raw = MIXED.replace(b"\r\n--b1\r\n", b"\r\n" + PREAMBLE + b"--b1\r\n", 1) + EPILOGUE
    old_mta = smarthost_factory(withhold=("8BITMIME",))
    rt = with_relay(runtime, old_mta)
    enqueue(rt, raw=raw)
    assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.SENT]
    [msg] = old_mta.messages
    assert valid_for(msg.content, eightbit=False)
    assert leaves(msg.content) == leaves(raw)
    parsed = email.message_from_bytes(msg.content, policy=default_policy)
    assert isinstance(parsed.preamble, str) and isinstance(parsed.epilogue, str)
    assert binascii.a2b_qp(parsed.preamble) == PREAMBLE.rstrip(b"\r\n")
    assert binascii.a2b_qp(parsed.epilogue).replace(b"\r\n", b"\n") == EPILOGUE.replace(
        b"\r\n", b"\n"
    )


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=any_messages())
@example(  # a part ending in a bare CR (CI, once): it travels as a line end
    raw=b"From: <alice@example.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed;"
    b' boundary="=b="\r\n\r\n--=b=\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n'
    b"\r\r\n--=b=--\r\n"
)
@example(  # a NUL, a bare CR and LF, an overlong line, an 8-bit preamble and epilogue
    raw=b"From: <alice@example.test>\r\nSubject: a\x00b\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="=b="\r\n\r\ncaf\xe9\r\n--=b=\r\n'
    b"Content-Type: application/octet-stream\r\n\r\n\x00\xff\rx\ny\r\n--=b=\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + b"\xc3\xa9" * 600 + b"\r\n"
    b"--=b=--\r\n\xe9\x00"
)
@pytest.mark.parametrize(
    "withhold",
    [(), ("SMTPUTF8",), ("8BITMIME",), ("8BITMIME", "SMTPUTF8")],
    ids=["8bitmime-smtputf8", "8bitmime", "smtputf8", "neither"],
)
def test_what_reaches_a_relay_is_valid_for_what_it_announced(
    runtime: Runtime,
    smarthost_factory: SmarthostFactory,
    withhold: tuple[str, ...],
    raw: bytes,
) -> None:
    """Whatever the message, a relay gets data valid for what it announced (CRLF line
    ends only, lines of at most 998 octets, no NUL; 7-bit without 8BITMIME, declared
    BODY=8BITMIME where it is 8-bit), whose parts decode to the same bytes; a message
    that is valid already goes as stored. Or it gets nothing, and the message is
    returned: UTF-8 header fields need SMTPUTF8 (5.6.9)."""
    peer = smarthost_factory(withhold=withhold)
    eightbit = "8BITMIME" not in withhold
    rt = with_relay(runtime, peer)
    with db.transaction(rt.sessions) as session:
        session.execute(sa.delete(QueueItem))
    enqueue(rt, raw=raw)
    [result] = sweep(rt, FakeClock())
    if result.outcome is Outcome.BOUNCED:
        assert "SMTPUTF8" in withhold and relay._utf8_headers(raw)
        assert peer.messages == []
        return
    assert result.outcome is Outcome.SENT
    [msg] = peer.messages
    assert msg.content.endswith(b"\r\n")
    assert valid_for(msg.content, eightbit=eightbit)
    assert ("BODY=8BITMIME" in msg.mail_options) == (not msg.content.isascii())
    if sevenbit.fits(raw, eightbit=eightbit):
        assert msg.content == relay.wire_form(raw)

    def payloads(raw: bytes) -> list[tuple[str, bytes]]:
        # SMTP carries lines: a bare CR or LF goes as CRLF (as every relay sends it), and
        # DATA ends in a line end, so one may follow the last part's content.
        return [(kind, _lines(data).rstrip(b"\n")) for kind, data in decoded_leaves(raw)]

    assert payloads(msg.content) == payloads(relay.wire_form(raw))


def _lines(data: bytes) -> bytes:
    """`data` with each line end (CRLF, bare CR, bare LF) as LF."""
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def test_utf8_header_fields_to_a_relay_without_smtputf8_bounce_with_5_6_9(
    runtime: Runtime, mail_users: dict[str, str], smarthost_factory: SmarthostFactory
) -> None:
    """RFC 6532 3 / RFC 6531 3.4: a message whose header fields are UTF-8 needs
    SMTPUTF8; a server without it must not get it. It was sent as legacy 8-bit mail;
    now it is returned with 5.6.9 (RFC 6531's "UTF-8 header message cannot be
    transferred"). A UTF-8 address keeps its 5.6.7."""
    no_eai = smarthost_factory(withhold=("SMTPUTF8",))
    rt = with_relay(runtime, no_eai)
    eai = "From: Jörg <alice@example.test>\r\nSubject: Grüße\r\n\r\nhallo\r\n".encode()
    enqueue(rt, raw=eai)
    assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.BOUNCED]
    [bounce] = mailbox_of(rt, ALICE)
    _msg, (_per_message, per_recipient) = delivery_status(bounce.raw)
    assert per_recipient["Status"] == "5.6.9"
    assert "SMTPUTF8" in per_recipient["Diagnostic-Code"]
    assert no_eai.messages == []


# -- TLS insistence, implicit TLS, AUTH -------------------------------------------


def test_no_starttls_offered_means_nothing_is_sent(
    runtime: Runtime, smarthost_factory: SmarthostFactory
) -> None:
    plain = smarthost_factory(starttls=False)
    rt = with_relay(runtime, plain)  # security = starttls
    enqueue(rt)
    assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.DEFERRED]
    [row] = rows(rt)
    assert "does not offer STARTTLS; not sending in clear" in row.last_error
    assert plain.messages == []


def test_untrusted_certificate_means_nothing_is_sent(
    runtime: Runtime, smarthost_factory: SmarthostFactory
) -> None:
    impostor = smarthost_factory(trusted=False)
    rt = with_relay(runtime, impostor)
    enqueue(rt)
    assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.DEFERRED]
    [row] = rows(rt)
    assert row.last_error.startswith("tls: certificate of relay")
    assert "not trusted" in row.last_error
    assert impostor.messages == []


def test_plain_relay_when_security_none(
    runtime: Runtime, smarthost_factory: SmarthostFactory
) -> None:
    local = smarthost_factory(starttls=False)
    rt = with_relay(runtime, local, security="none")
    enqueue(rt)
    assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.SENT]
    [msg] = local.messages
    assert msg.tls is False and msg.content == RAW


def test_implicit_tls_with_auth(runtime: Runtime, smarthost_factory: SmarthostFactory) -> None:
    submission = smarthost_factory(implicit_tls=True, credentials=("relay-user", "relay-pw-9x"))
    rt = with_relay(runtime, submission)
    assert rt.settings.relay.security == "tls"
    enqueue(rt)
    assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.SENT]
    [msg] = submission.messages
    assert (msg.tls, msg.auth_login, msg.content) == (True, "relay-user", RAW)


def test_starttls_with_auth(runtime: Runtime, smarthost_factory: SmarthostFactory) -> None:
    host = smarthost_factory(credentials=("relay-user", "relay-pw-9x"))
    rt = with_relay(runtime, host)
    enqueue(rt)
    assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.SENT]
    assert host.messages[0].auth_login == "relay-user"


def test_wrong_relay_password_defers_and_never_logs_it(
    runtime: Runtime, smarthost_factory: SmarthostFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Bad credentials are our misconfiguration: the mail waits, it does not bounce."""
    host = smarthost_factory(credentials=("relay-user", "relay-pw-9x"))
    rt = with_relay(runtime, host, password="wrong-pw-Zq7")
    enqueue(rt)
    caplog.set_level(logging.DEBUG)
    assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.DEFERRED]
    [row] = rows(rt)
    assert "refused our credentials" in row.last_error
    assert host.auth_failures >= 1 and host.messages == []
    assert "wrong-pw-Zq7" not in caplog.text and "wrong-pw-Zq7" not in row.last_error
    assert "secret body text" not in caplog.text


def test_relay_demanding_auth_we_lack_defers_instead_of_bouncing(
    runtime: Runtime, mail_users: dict[str, str], smarthost_factory: SmarthostFactory
) -> None:
    host = smarthost_factory(credentials=("relay-user", "relay-pw-9x"))
    rt = with_relay(runtime, host, username="", password="")
    enqueue(rt)
    assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.DEFERRED]
    assert "relay requires AUTH" in rows(rt)[0].last_error
    assert mailbox_of(rt, ALICE) == []


def test_password_is_never_sent_without_tls(
    runtime: Runtime, smarthost_factory: SmarthostFactory
) -> None:
    local = smarthost_factory(starttls=False)
    rt = with_relay(runtime, local, security="none", username="u", password="p-Hk2")
    enqueue(rt)
    assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.DEFERRED]
    assert "unencrypted" in rows(rt)[0].last_error
    assert local.messages == []


def test_unreadable_ca_file_is_a_settings_error(runtime: Runtime, tmp_path: object) -> None:
    bad = dataclasses.replace(
        runtime,
        settings=runtime.settings.replace(relay={"host": "127.0.0.1", "ca_file": "/nonexistent"}),
    )
    with pytest.raises(relay.SettingsError, match=r"\[relay\] ca_file"):
        Relay(bad)


# -- the worker loop ----------------------------------------------------------------


def test_no_host_warns_once_and_leaves_mail_queued(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    enqueue(runtime)
    caplog.set_level(logging.WARNING, logger="gateway.relay")
    worker = Relay(runtime, clock=FakeClock())

    async def scenario() -> None:
        assert await worker.sweep() == []
        assert await worker.sweep() == []
        stop = asyncio.Event()
        stop.set()
        await worker.run(stop)

    asyncio.run(scenario())
    warnings = [r for r in caplog.records if "no smarthost configured" in r.getMessage()]
    assert len(warnings) == 1
    [row] = rows(runtime)
    assert (row.status, row.attempts) == ("queued", 0)


def test_stop_releases_the_in_flight_row(
    runtime: Runtime, smarthost: FakeSmarthost, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop while the smarthost is stuck mid-DATA hands the row back unsent, not lost."""
    monkeypatch.setattr(relay, "STOP_GRACE_SECONDS", 0.05)
    rt = with_relay(runtime, smarthost)
    clock = FakeClock()
    enqueue(rt)
    smarthost.hold("data")

    async def scenario() -> None:
        stop = asyncio.Event()
        worker = asyncio.create_task(run_relay(rt, stop, clock))
        await asyncio.to_thread(smarthost.wait_held)
        stop.set()
        await worker

    asyncio.run(scenario())
    [row] = rows(rt)
    assert (row.status, row.attempts, row.leased_until) == ("queued", 0, None)
    assert row.next_attempt_at == T0
    assert smarthost.messages == []

    smarthost.release_hold()
    assert [r.outcome for r in sweep(rt, clock)] == [Outcome.SENT]
    assert [m.content for m in smarthost.messages] == [RAW]


def test_stop_after_the_smarthost_accepted_does_not_send_twice(
    runtime: Runtime, smarthost: FakeSmarthost, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once DATA got its 250 the row counts as sent, even if the stop comes during QUIT."""
    monkeypatch.setattr(relay, "STOP_GRACE_SECONDS", 0.05)
    rt = with_relay(runtime, smarthost)
    clock = FakeClock()
    enqueue(rt)
    smarthost.hold("quit")

    async def scenario() -> None:
        stop = asyncio.Event()
        worker = asyncio.create_task(run_relay(rt, stop, clock))
        await asyncio.to_thread(smarthost.wait_held)
        stop.set()
        await worker

    try:
        asyncio.run(scenario())
    finally:
        smarthost.release_hold()
    assert rows(rt) == []
    clock.advance(3600)
    assert sweep(rt, clock) == []
    assert [m.content for m in smarthost.messages] == [RAW]


def test_two_workers_send_every_row_exactly_once(
    runtime: Runtime, smarthost: FakeSmarthost
) -> None:
    """Two relay workers, each with its own engine (as two processes would), one queue."""
    rt = with_relay(runtime, smarthost, batch_size=3)
    other = Runtime.open(rt.settings)
    count = 24
    for n in range(count):
        enqueue(rt, queue_id=f"Q{n}", rcpt_to=f"r{n}@elsewhere.test", now=dt.datetime.now(dt.UTC))

    async def scenario() -> None:
        stop = asyncio.Event()
        workers = [asyncio.create_task(run_relay(r, stop)) for r in (rt, other)]
        await asyncio.to_thread(smarthost.wait_for, count, 20.0)
        for _ in range(400):
            if not await asyncio.to_thread(rows, rt):
                break
            await asyncio.sleep(0.025)
        stop.set()
        await asyncio.gather(*workers)

    try:
        asyncio.run(scenario())
    finally:
        other.close()
    got = sorted(rcpt for m in smarthost.messages for rcpt in m.rcpt_tos)
    assert got == sorted(f"r{n}@elsewhere.test" for n in range(count))
    assert rows(rt) == []


def test_a_database_error_does_not_stop_the_worker(
    runtime: Runtime,
    smarthost: FakeSmarthost,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rt = with_relay(runtime, smarthost)
    enqueue(rt, now=dt.datetime.now(dt.UTC))
    real_claim = outbound.claim
    calls = 0

    def flaky_claim(*args: object, **kwargs: object) -> list[outbound.ClaimedItem]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise sa.exc.OperationalError("SELECT …", {"raw": b"secret body text"}, Exception())
        return real_claim(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(outbound, "claim", flaky_claim)

    async def scenario() -> None:
        stop = asyncio.Event()
        worker = asyncio.create_task(run_relay(rt, stop))
        await asyncio.to_thread(smarthost.wait_for, 1)
        stop.set()
        await worker

    asyncio.run(scenario())
    assert calls >= 2
    assert "database error, retrying shortly: OperationalError" in caplog.text
    assert "secret body text" not in caplog.text
    assert [m.content for m in smarthost.messages] == [RAW]


# -- rows sealed at rest (secure-page notifications) --------------------------------


def enqueue_sealed(runtime: Runtime, ring: MasterKeyRing, *, queue_id: str = "Q1") -> int:
    sealed = outbound.seal_raw(ring, RAW, queue_id=queue_id, rcpt_to=CAROL)
    assert RAW not in sealed
    with db.transaction(runtime.sessions) as session:
        item = outbound.enqueue(
            session,
            queue_id=queue_id,
            mail_from=ALICE,
            rcpt_to=CAROL,
            raw=sealed,
            now=T0,
            sealed=True,
        )
        session.flush()
        return item.id


def test_a_sealed_row_is_sent_opened_byte_for_byte(
    runtime: Runtime, smarthost: FakeSmarthost
) -> None:
    rt = with_relay(runtime, smarthost)
    enqueue_sealed(rt, rt.ring.get())
    assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.SENT]
    [msg] = smarthost.messages
    assert msg.content == RAW


def test_a_sealed_row_the_ring_cannot_open_waits_and_says_why(
    runtime: Runtime, smarthost: FakeSmarthost
) -> None:
    """Retried like a failed delivery, so the maximum age bounces it in the end
    (tests/gateway/test_queue_lost_master_key.py); never sent."""
    rt = with_relay(runtime, smarthost)
    enqueue_sealed(rt, MasterKeyRing(primary=9, keys={9: bytes(32)}))
    assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.DEFERRED]
    [row] = rows(rt)
    assert row.status == "queued" and row.attempts == 1
    assert "master-key version 9" in row.last_error
    assert row.next_attempt_at > T0 and smarthost.messages == []


def test_master_key_rotation_moves_sealed_rows_with_the_totp_secrets(runtime: Runtime) -> None:
    old = runtime.ring.get()
    enqueue_sealed(runtime, old)
    rotated = old.with_new_primary()
    with db.transaction(runtime.sessions) as session:
        assert rewrap_gateway_records(session, rotated).moved == 1
    with db.transaction(runtime.sessions) as session:
        assert rewrap_gateway_records(session, rotated).moved == 0  # already moved
    [row] = rows(runtime)
    assert seal.blob_version(row.raw) == rotated.primary
    assert outbound.open_raw(rotated.with_retired(old.primary), row) == RAW
