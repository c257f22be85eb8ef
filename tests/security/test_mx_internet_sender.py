"""Threat: anyone on the Internet, talking to the MX port, wants it to relay, to split one
message into two, to answer its probes differently per user, to send auto-replies to a
forged or machine sender, to hold a connection with a trickle, or to pass a forged
`From:` of a hosted address off as that user's mail.

Each attack below held when it was tried (2026-12-06); these tests keep it so. The
session limits that did not hold are in test_mx_session_abuse.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import smtplib
import ssl
import time

import pytest
import sqlalchemy as sa

from gateway import accounts, autoresponder, db, reading
from gateway.inbound import InboundServer
from gateway.models import Address, AuditEvent, Autoresponder, MailboxMessage, QueueItem
from gateway.relay import Outcome, Relay
from gateway.runtime import Runtime
from tests.conftest import LoopThread
from tests.fakes.scripted_smtp import ScriptedSmtp
from tests.security.test_mx_session_abuse import Wire

BOB = "bob@example.test"
ALICE = "alice@example.test"
OUTSIDER = "someone@elsewhere.example"


def queued(runtime: Runtime) -> list[QueueItem]:
    with db.read_only(runtime.sessions) as session:
        return list(session.scalars(sa.select(QueueItem)))


def stored(runtime: Runtime) -> list[MailboxMessage]:
    with db.read_only(runtime.sessions) as session:
        return list(session.scalars(sa.select(MailboxMessage).order_by(MailboxMessage.id)))


@pytest.mark.parametrize(
    "rcpt",
    [
        "<victim@gmail.example>",
        "<@example.test:victim@gmail.example>",  # a source route through us to outside
        "<@example.test,@example.test:victim@gmail.example>",
        "<victim%gmail.example@example.test>",  # the %-hack
        "<gmail.example!victim@example.test>",  # a UUCP bang path
        "<victim!gmail.example@example.test>",
        '<"victim@gmail.example"@example.test>',
        "<victim@gmail.example@example.test>",
        "<bob@example.test@gmail.example>",
        "<bob@[127.0.0.1]>",  # an address literal
        "<bob@example.test.>",
        "<bob@ex\u0430mple.test>",  # a Cyrillic a
        "<bob@exa\u00admple.test>",  # a soft hyphen
        "<Postmaster@gmail.example>",
    ],
)
def test_nothing_is_relayed(inbound: InboundServer, runtime: Runtime, rcpt: str) -> None:
    with smtplib.SMTP("127.0.0.1", inbound.port, timeout=30) as client:
        client.ehlo("mx.elsewhere.example")
        assert client.mail(OUTSIDER, ["SMTPUTF8"])[0] == 250
        code, _ = client.docmd("RCPT TO:" + rcpt)
        assert code in (550, 553), code
    assert queued(runtime) == []


def test_a_source_route_to_a_hosted_user_is_ignored_and_delivered_here(
    inbound: InboundServer, runtime: Runtime
) -> None:
    """RFC 5321 Appendix C: the route is ignored and the mail goes to the final address,
    which is ours; nothing goes to the hosts the route names."""
    with smtplib.SMTP("127.0.0.1", inbound.port, timeout=30) as client:
        client.ehlo("mx.elsewhere.example")
        assert client.mail(OUTSIDER)[0] == 250
        assert client.docmd(f"RCPT TO:<@relay.example,@other.example:{BOB}>")[0] == 250
        assert client.data(b"Subject: routed\r\n\r\nx\r\n")[0] == 250
    assert [m.subject for m in stored(runtime)] == ["routed"]
    assert queued(runtime) == []


SMUGGLED = (
    b"MAIL FROM:<ceo@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
    b"From: ceo@example.test\r\nSubject: smuggled\r\n\r\npay\r\n"
)


@pytest.mark.parametrize(
    "fake_end",
    [b"\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\n", b"\r\n.\r", b"\r\n\x00.\r\n"],
    ids=["LF.LF", "LF.CRLF", "CR.CRLF", "CRLF.LF", "CRLF.CR", "CRLF-NUL.CRLF"],
)
def test_smuggling_cannot_end_data_early(
    inbound: InboundServer, runtime: Runtime, fake_end: bytes
) -> None:
    wire = Wire(inbound.port)
    try:
        wire.send("EHLO mx.elsewhere.example")
        replies = wire.send("MAIL FROM:<a@elsewhere.example>", f"RCPT TO:<{BOB}>", "DATA")
        assert replies[2].startswith(b"354")
        # The whole attack and the real end in one write, a pipelined command behind it.
        wire.sock.sendall(b"Subject: first\r\n\r\nhello" + fake_end + SMUGGLED + b".\r\nNOOP\r\n")
        assert wire.reply().startswith(b"250 2.0.0")
        assert wire.reply() == b"250 OK\r\n"  # the NOOP, not a second message's answers
    finally:
        wire.close()
    (only,) = stored(runtime)
    assert only.subject == "first" and only.envelope_from == "a@elsewhere.example"
    assert b"Subject: smuggled" in only.raw  # carried inside the one message


def test_no_user_enumeration_by_vrfy_or_expn_and_no_auth(
    inbound: InboundServer, client_ssl_context: ssl.SSLContext
) -> None:
    """RCPT must tell (550 5.1.1 rather than a bounce later); VRFY and EXPN tell nothing."""
    with smtplib.SMTP("127.0.0.1", inbound.port, timeout=30) as client:
        client.starttls(context=client_ssl_context)
        client.ehlo("mx.elsewhere.example")
        assert client.verify(BOB) == client.verify("ghost@example.test")
        assert client.verify(BOB)[0] == 252
        assert client.expn("staff")[0] == 502
        assert not client.has_extn("auth")
        assert client.docmd("AUTH", "PLAIN AGJvYgBib2Itc210cC1wdw==")[0] == 504
        assert client.docmd("AUTH", "LOGIN")[0] == 504


def test_recipients_beyond_the_limit_get_452(inbound: InboundServer) -> None:
    limit = 100
    wire = Wire(inbound.port)
    try:
        wire.send("EHLO list.elsewhere.example", "MAIL FROM:<list@elsewhere.example>")
        replies = wire.send(*[f"RCPT TO:<{BOB}>"] * (limit + 30))
        assert all(r.startswith(b"250") for r in replies[:limit])
        assert all(r.startswith(b"452 4.5.3") for r in replies[limit:])
        wire.sock.sendall(b"DATA\r\n")
        assert wire.reply().startswith(b"354")  # 452 is no error: the message goes on
        wire.sock.sendall(b"Subject: many\r\n\r\nx\r\n.\r\n")
        assert wire.reply().startswith(b"250 2.0.0")
    finally:
        wire.close()


@pytest.mark.parametrize(
    "raw",
    [b"Subject: only a header", b"Subject: only a header\r\nX-Other: y\r\n", b""],
    ids=["no-line-end", "header-block", "empty"],
)
def test_a_message_of_only_headers_is_stored_not_451(
    inbound: InboundServer, runtime: Runtime, raw: bytes
) -> None:
    with smtplib.SMTP("127.0.0.1", inbound.port, timeout=30) as client:
        assert client.sendmail(OUTSIDER, [BOB], raw) == {}
    assert len(stored(runtime)) == 1


def test_a_huge_header_section_is_refused_at_once(inbound: InboundServer) -> None:
    fields = b"".join(b"X-H%07d: %s\r\n" % (i, b"v" * 60) for i in range(200_000))
    start = time.monotonic()
    with (
        smtplib.SMTP("127.0.0.1", inbound.port, timeout=60) as client,
        pytest.raises(smtplib.SMTPDataError) as refused,
    ):
        client.sendmail(OUTSIDER, [BOB], fields + b"Subject: big\r\n\r\nx\r\n")
    assert refused.value.smtp_code == 554
    assert time.monotonic() - start < 20


@pytest.fixture
def bob_away(runtime: Runtime, mail_users: dict[str, str]) -> None:
    with db.transaction(runtime.sessions) as session:
        bob = accounts.find_address(session, BOB)
        assert bob is not None
        responder = Autoresponder(address_id=bob.id, name="away", subject="Away:", body="Later.")
        session.add(responder)
        session.flush()
        autoresponder.activate(session, responder)


@pytest.mark.usefixtures("bob_away")
@pytest.mark.parametrize(
    ("sender", "extra"),
    [
        ("", b""),  # a bounce
        ("a@x.example", b"Auto-Submitted: auto-replied\r\n"),
        ("a@x.example", b"AUTO-SUBMITTED: Auto-Generated\r\n"),
        ("a@x.example", b"Auto-Submitted:\r\n auto-replied\r\n"),
        ("a@x.example", b"Auto-Submitted: (robot) auto-notified\r\n"),
        ("a@x.example", b"Precedence: Bulk\r\n"),
        ("a@x.example", b"Precedence: list\r\n"),
        ("a@x.example", b"Precedence:  junk \r\n"),
        ("a@x.example", b"list-id: <l.x.example>\r\n"),
        ("MAILER-DAEMON@x.example", b""),
        ("owner-list@x.example", b""),
        ("list-request@x.example", b""),
        ("Bob@Example.Test", b""),  # mail from the address itself
    ],
)
def test_no_auto_reply_where_rfc_3834_forbids_one(
    inbound: InboundServer, runtime: Runtime, sender: str, extra: bytes
) -> None:
    raw = f"From: x@x.example\r\nTo: {BOB}\r\nSubject: hi\r\n".encode() + extra + b"\r\nbody\r\n"
    with smtplib.SMTP("127.0.0.1", inbound.port, timeout=30) as client:
        assert client.sendmail(sender, [BOB], raw) == {}
    assert len(stored(runtime)) == 1
    assert queued(runtime) == []


@pytest.mark.usefixtures("bob_away")
def test_an_internet_message_with_a_hosted_return_path_gets_no_away_reply(
    inbound: InboundServer, runtime: Runtime
) -> None:
    """Hosted users' own mail comes by submission. Over the MX, `MAIL FROM:<alice@…>` is
    a stranger's choice: Bob's away reply to it was stored in Alice's mailbox, an answer
    to a message she never sent, and a way for anyone to put text into hosted inboxes."""
    raw = f"From: {ALICE}\r\nTo: {BOB}\r\nSubject: hi\r\n\r\nbody\r\n".encode()
    with smtplib.SMTP("127.0.0.1", inbound.port, timeout=30) as client:
        assert client.sendmail(ALICE.upper(), [BOB], raw) == {}
    (row,) = stored(runtime)
    assert row.envelope_from.lower() == ALICE
    assert queued(runtime) == []


def test_a_forged_hosted_from_gets_no_trust_mark(inbound: InboundServer, runtime: Runtime) -> None:
    """docs/security.md: the MX checks no From header (no SPF, DKIM or DMARC). What keeps
    `From: alice@…` from the Internet apart from Alice's own mail is that only mail
    that went through the submission pipeline is stored encrypted and signed; this is
    stored as it came and shown "not encrypted", never "signed by the sender"."""
    raw = (
        f"From: Alice <{ALICE}>\r\nTo: {BOB}\r\nSubject: urgent transfer\r\n"
        "X-Sealgate-Encrypt: yes\r\n\r\npay now\r\n"
    ).encode()
    with smtplib.SMTP("127.0.0.1", inbound.port, timeout=30) as client:
        assert client.sendmail(ALICE, [BOB], raw) == {}
    (row,) = stored(runtime)
    assert not row.encrypted and b"X-Sealgate" not in row.raw
    with db.read_only(runtime.sessions) as session:
        bob = session.scalars(sa.select(Address).where(Address.address == BOB)).one()
        opened = reading.open_message(session, runtime.ring.get(), bob.account_id, row.id)
    assert opened.signature == "not-encrypted" and not opened.encrypted


def test_a_trickle_inside_data_is_cut_at_the_idle_timeout(
    runtime: Runtime, mail_users: dict[str, str], loop_thread: LoopThread
) -> None:
    """aiosmtpd restarts the idle timer only at a command: a body sent a byte at a time
    cannot hold the connection past `[smtp] idle_timeout` after DATA."""
    quick = Runtime.open(runtime.settings.replace(smtp={"idle_timeout": 1.0}))
    server = InboundServer(quick)
    loop_thread.run(server.start())
    try:
        wire = Wire(server.port)
        try:
            wire.send("EHLO slow.example", "MAIL FROM:<a@elsewhere.example>", f"RCPT TO:<{BOB}>")
            assert wire.send("DATA")[0].startswith(b"354")
            start = time.monotonic()
            wire.sock.settimeout(0.2)
            answer = b""
            while not answer and time.monotonic() - start < 10:
                wire.sock.sendall(b"x")  # one byte of the body every 0.2 s
                try:
                    answer = wire.sock.recv(1024)
                except TimeoutError:
                    continue
            assert answer.startswith(b"421 4.4.2")
        finally:
            wire.close()
    finally:
        loop_thread.run(server.stop(grace=1))
        quick.close()


def test_a_steady_upload_longer_than_the_idle_timeout_is_not_cut(
    runtime: Runtime, mail_users: dict[str, str], loop_thread: LoopThread
) -> None:
    """A large message on a slow link takes longer than `idle_timeout` to send; each
    chunk extends the deadline of DATA by its size over `[smtp] min_data_rate` (as
    Postfix's smtpd_min_data_rate), so a client sending steadily above that rate gets
    its 250 however long the upload takes, while the trickle above is still cut."""
    quick = Runtime.open(runtime.settings.replace(smtp={"idle_timeout": 1.0, "min_data_rate": 100}))
    server = InboundServer(quick)
    loop_thread.run(server.start())
    try:
        wire = Wire(server.port)
        try:
            wire.send("EHLO slow.example", "MAIL FROM:<a@elsewhere.example>", f"RCPT TO:<{BOB}>")
            assert wire.send("DATA")[0].startswith(b"354")
            wire.sock.sendall(f"From: a@elsewhere.example\r\nTo: {BOB}\r\n\r\n".encode())
            line = b"x" * 298 + b"\r\n"  # 3 s of deadline each, sent every 0.5 s
            for _ in range(6):  # 3 s in all: three times the idle timeout
                wire.sock.sendall(line)
                time.sleep(0.5)
            wire.sock.settimeout(30)
            wire.sock.sendall(b".\r\n")
            assert wire.sock.recv(1024).startswith(b"250 "), "cut off before the end"
        finally:
            wire.close()
    finally:
        loop_thread.run(server.stop(grace=1))
        quick.close()


@pytest.mark.usefixtures("bob_away")
def test_no_backscatter_when_an_auto_reply_to_a_forged_sender_bounces(
    inbound: InboundServer, runtime: Runtime
) -> None:
    """A forged outside sender gets Bob's auto-reply (RFC 3834 allows one), sent with
    a null sender; its refusal is dropped, not bounced to anyone."""
    raw = f"From: v@victim.example\r\nTo: {BOB}\r\nSubject: hi\r\n\r\nbody\r\n".encode()
    with smtplib.SMTP("127.0.0.1", inbound.port, timeout=30) as client:
        assert client.sendmail("v@victim.example", [BOB], raw) == {}
    [reply] = queued(runtime)
    assert (reply.mail_from, reply.rcpt_to) == ("", "v@victim.example")
    with ScriptedSmtp({"RCPT": b"550 5.1.1 no such user, it was forged\r\n"}) as peer:
        relayed = dataclasses.replace(
            runtime,
            settings=runtime.settings.replace(
                relay={"host": peer.host, "port": peer.port, "security": "none"}
            ),
        )
        results = asyncio.run(Relay(relayed).sweep())
    assert [r.outcome for r in results] == [Outcome.BOUNCED]
    assert queued(runtime) == [] and len(stored(runtime)) == 1  # Bob's, nothing more
    with db.read_only(runtime.sessions) as session:
        [dropped] = session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == "relay.bounce_dropped")
        )
    assert "null sender" in dropped.detail
