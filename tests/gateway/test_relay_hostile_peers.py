"""The relay against a hostile or broken remote server (tests/fakes/scripted_smtp.py).

Threats: a peer whose replies are malformed, 8-bit, mismatched or slow makes the
relay crash, hang, send twice, bounce what was accepted, or retry what was refused;
a STARTTLS that is offered and then fails makes it send in clear; a bounce carries
the body it was to keep encrypted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import ssl
from pathlib import Path

import pytest
import trustme

from gateway import db
from gateway import queue as outbound
from gateway.relay import Outcome
from gateway.runtime import Runtime
from tests.fakes.scripted_smtp import CLOSE, STALL, ScriptedSmtp, Step, Trickle
from tests.gateway.test_relay import (
    ALICE,
    CAROL,
    RAW,
    T0,
    FakeClock,
    delivery_status,
    enqueue,
    mailbox_of,
    rows,
    sweep,
)


def via(runtime: Runtime, peer: ScriptedSmtp, **relay: object) -> Runtime:
    values: dict[str, object] = {"host": peer.host, "port": peer.port, "security": "none"}
    values["timeout"] = 5.0
    values.update(relay)
    return dataclasses.replace(runtime, settings=runtime.settings.replace(relay=values))


def outcome_with(runtime: Runtime, script: dict[str, Step], **relay: object) -> Outcome:
    with ScriptedSmtp(script) as peer:
        rt = via(runtime, peer, **relay)
        enqueue(rt)
        [result] = sweep(rt, FakeClock())
        return result.outcome


@pytest.mark.parametrize(
    ("step", "reply"),
    [
        ("DOT", b"251 2.0.0 queued\r\n"),
        ("DOT", b"252 ok\r\n"),
        ("MAIL", b"251 2.1.0 ok\r\n"),
        ("RCPT", b"252 2.1.5 cannot verify, will try\r\n"),
    ],
)
def test_any_2xx_is_a_positive_reply(
    runtime: Runtime, mail_users: dict[str, str], step: str, reply: bytes
) -> None:
    """RFC 5321 4.2.1: 2yz is a positive completion. A 2xx other than 250 after the
    final dot (or to MAIL, or other than 250/251 to RCPT) was taken for a temporary
    failure: an accepted message was sent again on every retry for five days, then
    bounced to its sender as undelivered."""
    with ScriptedSmtp({step: reply}) as peer:
        rt = via(runtime, peer)
        enqueue(rt)
        assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.SENT]
        assert rows(rt) == []
        [sent] = peer.messages
        assert sent.endswith(RAW)  # after the DKIM signatures
        assert mailbox_of(rt, ALICE) == []


def test_an_enhanced_code_in_other_digits_gives_a_valid_status(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    """RFC 3464 2.3.4: Status is ASCII digits. The enhanced code was matched with
    Unicode `\\d`, so a peer's "5.١.1" (an Arabic-Indic one) became "Status: 5.?.1"."""
    reply = "550 5.\u0661.1 no such user\r\n".encode()
    with ScriptedSmtp({"RCPT": reply}) as peer:
        rt = via(runtime, peer)
        enqueue(rt)
        assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.BOUNCED]
    [bounce] = mailbox_of(rt, ALICE)
    _msg, (_per_message, per_recipient) = delivery_status(bounce.raw)
    assert per_recipient["Status"] == "5.0.0"


# -- what held, kept as tests --------------------------------------------------------


def test_a_close_after_the_final_dot_is_retried_and_nothing_is_lost(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    """The classic duplicate: the peer got the data and hung up before its reply. Not
    knowing, the relay must keep the row and try again (RFC 5321 4.5.3.2.6 and RFC
    1047: a duplicate is the lesser harm), never drop it as sent."""
    clock = FakeClock()
    with ScriptedSmtp({"DOT": CLOSE}) as peer:
        rt = via(runtime, peer)
        enqueue(rt)
        assert [r.outcome for r in sweep(rt, clock)] == [Outcome.DEFERRED]
        assert len(peer.messages) == 1
    [row] = rows(rt)
    assert row.attempts == 1 and row.last_error.startswith("connection to relay lost")
    clock.advance(3600)
    with ScriptedSmtp() as peer:
        rt = via(runtime, peer)
        assert [r.outcome for r in sweep(rt, clock)] == [Outcome.SENT]
        [sent] = peer.messages
        assert sent.endswith(RAW)
    assert rows(rt) == [] and mailbox_of(rt, ALICE) == []


@pytest.mark.parametrize(
    ("step", "reply", "outcome"),
    [
        # The last line's code decides a multi-line reply, as Postfix reads it.
        ("RCPT", b"250-fine\r\n550 5.1.1 no such user\r\n", Outcome.BOUNCED),
        ("DOT", b"550-not fine\r\n250 2.0.0 queued\r\n", Outcome.SENT),
        ("MAIL", b"099 what\r\n", Outcome.DEFERRED),
        ("RCPT", b"999 what\r\n", Outcome.DEFERRED),
        ("RCPT", b"hello there\r\n", Outcome.DEFERRED),
        ("RCPT", b"-50 minus\r\n", Outcome.DEFERRED),
        ("DATA", b"250 no data wanted\r\n", Outcome.DEFERRED),
        ("DOT", b"354 more please\r\n", Outcome.DEFERRED),
        # 5xx before MAIL is our configuration, not the mail: it waits.
        ("GREETING", b"554 5.7.1 go away\r\n", Outcome.DEFERRED),
        ("EHLO", b"550 5.7.1 not you\r\n", Outcome.DEFERRED),
        ("MAIL", b"421 4.3.2 shutting down\r\n", Outcome.DEFERRED),
        ("DATA", b"554 5.5.1 no valid recipients\r\n", Outcome.BOUNCED),
    ],
)
def test_odd_and_mismatched_replies(
    runtime: Runtime, mail_users: dict[str, str], step: str, reply: bytes, outcome: Outcome
) -> None:
    with ScriptedSmtp({step: reply}) as peer:
        rt = via(runtime, peer)
        enqueue(rt)
        assert [r.outcome for r in sweep(rt, FakeClock())] == [outcome]
    left = rows(rt)
    assert (left == []) == (outcome is not Outcome.DEFERRED)
    assert len(mailbox_of(rt, ALICE)) == (1 if outcome is Outcome.BOUNCED else 0)


def test_an_8bit_refusal_gives_a_clean_bounce_without_the_body(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    reply = b"550-5.1.1 \xff\xfe\x00 unknown\r\n550 5.1.1 caf\xc3\xa9 \x1b[31m gone\r\n"
    with ScriptedSmtp({"RCPT": reply}) as peer:
        rt = via(runtime, peer)
        enqueue(rt)
        assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.BOUNCED]
    [bounce] = mailbox_of(rt, ALICE)
    msg, (_per_message, per_recipient) = delivery_status(bounce.raw)
    assert per_recipient["Status"] == "5.1.1"
    diagnostic = per_recipient["Diagnostic-Code"]
    assert diagnostic.startswith("smtp; 550 5.1.1") and diagnostic.isascii()
    assert not any(ch in diagnostic for ch in "\x00\x1b\r\n")
    assert b"secret body text" not in bounce.raw
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"


STAGE_TIMEOUTS = {
    "greeting_timeout": 0.5,
    "timeout": 0.5,
    "mail_timeout": 0.5,
    "rcpt_timeout": 0.5,
    "data_init_timeout": 0.5,
    "data_done_timeout": 0.5,
}


@pytest.mark.parametrize("step", ["GREETING", "EHLO", "MAIL", "RCPT", "DATA", "DOT"])
def test_a_peer_that_stalls_at_any_step_is_given_up_on_and_retried(
    runtime: Runtime, mail_users: dict[str, str], step: str
) -> None:
    with ScriptedSmtp({step: STALL}) as peer:
        rt = via(runtime, peer, **STAGE_TIMEOUTS)
        enqueue(rt)
        assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.DEFERRED]
    [row] = rows(rt)
    assert "timed out" in row.last_error.lower() or "no reply within" in row.last_error


@pytest.mark.parametrize("step", ["GREETING", "RCPT", "DOT"])
def test_a_reply_trickled_byte_by_byte_is_held_to_the_steps_timeout(
    runtime: Runtime, mail_users: dict[str, str], step: str
) -> None:
    """The timeout bounds the whole reply, not the wait for each byte: a peer that
    sends one byte at a time within it cannot hold the delivery for ever."""
    reply = {"GREETING": b"220 slow.test ESMTP\r\n", "RCPT": b"250 2.1.5 ok\r\n"}.get(
        step, b"250 2.0.0 queued\r\n"
    )
    with ScriptedSmtp({step: Trickle(reply, 0.25)}) as peer:
        rt = via(runtime, peer, **{**STAGE_TIMEOUTS, "greeting_timeout": 1.0, "timeout": 1.0})
        enqueue(rt)
        assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.DEFERRED]


@pytest.fixture
def tls_peer_settings(tls_ca: trustme.CA, tmp_path: Path) -> tuple[ssl.SSLContext, str]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "peer-ca.pem"
    tls_ca.cert_pem.write_to_path(str(ca_file))
    return context, str(ca_file)


STARTTLS_EHLO = b"250-scripted.test\r\n250-8BITMIME\r\n250 STARTTLS\r\n"


@pytest.mark.parametrize(
    ("script", "garble"),
    [
        ({"EHLO": STARTTLS_EHLO, "STARTTLS": b"454 4.7.0 TLS not available\r\n"}, False),
        ({"EHLO": STARTTLS_EHLO, "STARTTLS": b"220 go ahead\r\n"}, True),
        ({"EHLO": STARTTLS_EHLO, "STARTTLS": CLOSE}, False),
        ({"EHLO": STARTTLS_EHLO, "STARTTLS": b"250 sure\r\n"}, False),
    ],
    ids=["refused", "garbled-handshake", "closed", "not-220"],
)
def test_a_starttls_offered_then_failing_sends_nothing_in_clear(
    runtime: Runtime,
    mail_users: dict[str, str],
    tls_peer_settings: tuple[ssl.SSLContext, str],
    script: dict[str, Step],
    garble: bool,
) -> None:
    context, ca_file = tls_peer_settings
    with ScriptedSmtp(script, tls_context=context, garble_tls=garble) as peer:
        rt = via(runtime, peer, security="starttls", ca_file=ca_file)
        enqueue(rt)
        assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.DEFERRED]
        assert "MAIL" not in peer.verbs() and peer.messages == []
    assert len(rows(rt)) == 1


def test_a_tls_connection_cut_half_way_is_retried(
    runtime: Runtime, mail_users: dict[str, str], tls_peer_settings: tuple[ssl.SSLContext, str]
) -> None:
    context, ca_file = tls_peer_settings
    with ScriptedSmtp({"EHLO": STARTTLS_EHLO, "RCPT": CLOSE}, tls_context=context) as peer:
        rt = via(runtime, peer, security="starttls", ca_file=ca_file)
        enqueue(rt)
        assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.DEFERRED]
        assert peer.verbs()[:4] == ["EHLO", "STARTTLS", "EHLO", "MAIL"]
    [row] = rows(rt)
    assert row.last_error.startswith("connection to relay lost")


def test_552_after_the_data_bounces_with_the_headers_only(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    with ScriptedSmtp({"DOT": b"552 5.3.4 Message too big for me\r\n"}) as peer:
        rt = via(runtime, peer)
        enqueue(rt)
        assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.BOUNCED]
    [bounce] = mailbox_of(rt, ALICE)
    _msg, (_per_message, per_recipient) = delivery_status(bounce.raw)
    assert per_recipient["Status"] == "5.3.4"
    assert b"Subject: quarterly numbers" in bounce.raw
    assert b"secret body text" not in bounce.raw and b"desk of Alice" not in bounce.raw


def test_4xx_then_5xx_bounces_once(runtime: Runtime, mail_users: dict[str, str]) -> None:
    clock = FakeClock()
    with ScriptedSmtp({"RCPT": b"450 4.2.1 try later\r\n"}) as peer:
        rt = via(runtime, peer)
        enqueue(rt)
        assert [r.outcome for r in sweep(rt, clock)] == [Outcome.DEFERRED]
    assert mailbox_of(rt, ALICE) == []
    clock.advance(3600)
    with ScriptedSmtp({"RCPT": b"550 5.1.1 now gone\r\n"}) as peer:
        rt = via(runtime, peer)
        assert [r.outcome for r in sweep(rt, clock)] == [Outcome.BOUNCED]
        clock.advance(3600)
        assert sweep(rt, clock) == []
    [bounce] = mailbox_of(rt, ALICE)
    _msg, (_per_message, per_recipient) = delivery_status(bounce.raw)
    assert per_recipient["Status"] == "5.1.1" and rows(rt) == []


def test_the_bounce_of_a_sealed_notification_holds_neither_its_body_nor_its_link(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    """A secure-page notification is sealed at rest because its body holds the link;
    the bounce the sender gets back (stored in the mailbox) carries its headers only."""
    link = b"https://portal.example.test/s/" + b"T" * 43
    notification = RAW.replace(b"secret body text", link)
    with ScriptedSmtp({"RCPT": b"550 5.1.1 no such user\r\n"}) as peer:
        rt = via(runtime, peer)
        sealed = outbound.seal_raw(rt.ring.get(), notification, queue_id="Q1", rcpt_to=CAROL)
        with db.transaction(rt.sessions) as session:
            outbound.enqueue(
                session, queue_id="Q1", mail_from=ALICE, rcpt_to=CAROL, raw=sealed, now=T0,
                sealed=True,
            )  # fmt: skip
        assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.BOUNCED]
    [bounce] = mailbox_of(rt, ALICE)
    assert link not in bounce.raw and b"T" * 43 not in bounce.raw
    assert b"desk of Alice" not in bounce.raw


def test_a_relay_name_that_does_not_resolve_is_said_plainly(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    """A resolver error (getaddrinfo's negative errno) reached last_error as
    "[Errno -2] Name or service not known"; other errors had the prefix cut."""
    rt = dataclasses.replace(
        runtime,
        settings=runtime.settings.replace(
            relay={"host": "relay.nonexistent.invalid", "port": 25, "security": "none"}
        ),
    )
    enqueue(rt)
    assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.DEFERRED]
    [row] = rows(rt)
    assert row.last_error.startswith("connection to relay relay.nonexistent.invalid:25 failed: ")
    assert "[Errno" not in row.last_error


def test_a_peer_that_stops_reading_the_data_is_given_up_on(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    """RFC 5321 4.5.3.2.5's data block timeout: a peer that says 354 and then reads
    nothing holds the transfer only that long once every buffer between is full."""
    big = RAW + (b"y" * 998 + b"\r\n") * 24_000  # about 24 MB, more than the buffers
    with ScriptedSmtp(deaf_after_data=True) as peer:
        rt = via(runtime, peer, data_block_timeout=1.0)
        enqueue(rt, raw=big)
        assert [r.outcome for r in sweep(rt, FakeClock())] == [Outcome.DEFERRED]
        # The relay let go of its socket: closed gracefully, it stayed open (with the
        # message in its buffer) for as long as the peer read nothing.
        assert sockets_to(peer.port) == 0
    [row] = rows(rt)
    assert "the relay took none of the data for 1 s" in row.last_error


def sockets_to(port: int) -> int:
    """How many of this process's open file descriptors are TCP sockets to `port`."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for line in Path("/proc/self/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[2].split(":")[1], 16) == port and fields[9] in inodes:
            count += 1
    return count
