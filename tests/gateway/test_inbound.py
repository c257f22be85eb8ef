"""The inbound (MX) listener: mail from anywhere for hosted addresses, never a relay."""

from __future__ import annotations

import smtplib
import ssl
import threading
from pathlib import Path
from types import FrameType

import pytest
import sqlalchemy as sa

from gateway import accounts, autoresponder, db
from gateway.inbound import InboundServer
from gateway.models import Address, Autoresponder, MailboxMessage, MailLogEntry, QueueItem
from gateway.pipeline.passthrough import is_already_encrypted
from gateway.runtime import Runtime
from tests.conftest import LoopThread
from tests.gnupg import GnuPG
from tests.keystore.gpgkeys import make_key

BOB = "bob@example.test"
OUTSIDER = "news@elsewhere.example"


def inbox(runtime: Runtime, address: str) -> list[MailboxMessage]:
    with db.transaction(runtime.sessions) as session:
        return list(
            session.scalars(
                sa.select(MailboxMessage)
                .join(MailboxMessage.address)
                .where(Address.address == address)
            )
        )


def test_no_relaying_and_no_unknown_mailboxes(inbound: InboundServer) -> None:
    with smtplib.SMTP("127.0.0.1", inbound.port, timeout=30) as client:
        client.ehlo("mx.elsewhere.example")
        assert not client.has_extn("auth")
        assert client.has_extn("starttls")
        assert client.mail(OUTSIDER)[0] == 250
        code, reply = client.rcpt("victim@gmail.example")
        assert code == 550 and reply.startswith(b"5.7.1")
        code, reply = client.rcpt("ghost@example.test")
        assert code == 550 and reply.startswith(b"5.1.1")


def test_mail_from_outside_is_stored_with_trace_and_without_control_headers(
    inbound: InboundServer, runtime: Runtime, client_ssl_context: ssl.SSLContext
) -> None:
    raw = (
        f"From: {OUTSIDER}\r\nTo: {BOB}\r\nSubject: hello from outside\r\n"
        "X-Sealgate-Encrypt: yes\r\nX-Sealgate-Password: planted\r\n\r\nhi Bob\r\n"
    ).encode()
    with smtplib.SMTP("127.0.0.1", inbound.port, timeout=30) as client:
        client.starttls(context=client_ssl_context)
        assert client.sendmail(OUTSIDER, [BOB], raw) == {}
        # A bounce (null sender) is accepted too.
        assert client.sendmail("", [BOB], b"Subject: bounce\r\n\r\nundeliverable\r\n") == {}
    first, bounce = inbox(runtime, BOB)
    assert first.subject == "hello from outside" and first.envelope_from == OUTSIDER
    assert b"X-Sealgate" not in first.raw and b"planted" not in first.raw
    assert first.raw.startswith(b"Received: from ") and b"with ESMTPS id" in first.raw
    assert first.raw.endswith(b"\r\n\r\nhi Bob\r\n")
    assert bounce.envelope_from == ""


def test_autoresponder_answers_mail_from_anywhere(inbound: InboundServer, runtime: Runtime) -> None:
    with db.transaction(runtime.sessions) as session:
        bob = accounts.find_address(session, BOB)
        assert bob is not None
        responder = Autoresponder(address_id=bob.id, name="away", subject="Away:", body="Later.")
        session.add(responder)
        session.flush()
        autoresponder.activate(session, responder)
    raw = f"From: {OUTSIDER}\r\nTo: {BOB}\r\nSubject: offer\r\n\r\nbuy\r\n".encode()
    list_mail = (
        f"From: {OUTSIDER}\r\nTo: {BOB}\r\nList-Id: <l.x>\r\nSubject: l\r\n\r\nx\r\n".encode()
    )
    with smtplib.SMTP("127.0.0.1", inbound.port, timeout=30) as client:
        assert client.sendmail("person@elsewhere.example", [BOB], raw) == {}
        assert client.sendmail("list@elsewhere.example", [BOB], list_mail) == {}
    with db.transaction(runtime.sessions) as session:
        (reply,) = session.scalars(sa.select(QueueItem)).all()
    assert reply.rcpt_to == "person@elsewhere.example" and reply.mail_from == ""
    assert b"Subject: Away: offer" in reply.raw


def test_a_message_that_went_round_too_often_is_refused_as_a_loop(
    inbound: InboundServer, runtime: Runtime
) -> None:
    """RFC 5321 6.3: a message with more than 100 Received fields is in a loop. It was
    stored (and answered by the autoresponder, feeding the loop); now it gets 554 5.4.6."""
    with db.transaction(runtime.sessions) as session:
        bob = accounts.find_address(session, BOB)
        assert bob is not None
        responder = Autoresponder(address_id=bob.id, name="away", subject="Away:", body="Later.")
        session.add(responder)
        session.flush()
        autoresponder.activate(session, responder)

    def hops(count: int) -> bytes:
        trace = "".join(
            f"Received: from h{i}.example by h{i + 1}.example; Sun, 6 Dec 2026 01:00:00 +0000\r\n"
            for i in range(count)
        )
        return f"{trace}From: {OUTSIDER}\r\nTo: {BOB}\r\nSubject: {count}\r\n\r\nx\r\n".encode()

    with smtplib.SMTP("127.0.0.1", inbound.port, timeout=30) as client:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail(OUTSIDER, [BOB], hops(101))
        assert refused.value.smtp_code == 554
        assert refused.value.smtp_error.startswith(b"5.4.6")
        client.rset()
        assert client.sendmail(OUTSIDER, [BOB], hops(100)) == {}
    assert [m.subject for m in inbox(runtime, BOB)] == ["100"]
    with db.transaction(runtime.sessions) as session:
        assert len(session.scalars(sa.select(QueueItem)).all()) == 1  # one answer, to "100"


@pytest.mark.parametrize(
    ("hosted", "rcpt", "smtputf8"),
    [
        ("anna@bücher.example", "anna@xn--bcher-kva.example", False),
        ("anna@bücher.example", "Anna@XN--BCHER-KVA.example", False),
        ("max@xn--mnchen-3ya.example", "max@münchen.example", True),
    ],
    ids=["a-label-rcpt", "a-label-upper", "u-label-rcpt"],
)
def test_an_internationalized_domain_takes_mail_in_either_form_of_its_name(
    inbound: InboundServer, runtime: Runtime, hosted: str, rcpt: str, smtputf8: bool
) -> None:
    """A sender without SMTPUTF8 must write a domain as its A-label (RFC 5321 2.3.5); a
    hosted domain added as `bücher.example` answered those RCPTs 550 5.7.1 "relaying
    denied", so most of the Internet could not reach it (and the reverse for a domain
    added in its A-label)."""
    with db.transaction(runtime.sessions) as session:
        accounts.add_domain(session, hosted.rpartition("@")[2], actor="test")
        account = accounts.add_account(session, runtime.hasher, hosted, "portal-pw-x", actor="t")
        accounts.add_address(session, runtime.hasher, hosted, account, "smtp-pw-x", actor="t")
    raw = f"From: {OUTSIDER}\r\nSubject: idn\r\n\r\nhello\r\n".encode()
    with smtplib.SMTP("127.0.0.1", inbound.port, timeout=30) as client:
        options = ["SMTPUTF8"] if smtputf8 else []
        assert client.sendmail(OUTSIDER, [rcpt], raw, mail_options=options) == {}
    [stored] = inbox(runtime, hosted)
    assert stored.subject == "idn"


ODD_CHARSETS = [
    # Codecs Python knows that fail on every input ("undefined"), refuse the "replace"
    # error handler ("idna"), or are no codec name at all (a NUL in the label).
    pytest.param(
        b"Subject: body in idna\r\nContent-Type: text/plain; charset=idna\r\n\r\nx\r\n",
        id="body-idna",
    ),
    pytest.param(
        b"Subject: body undefined\r\nContent-Type: text/plain; charset=undefined\r\n\r\nx\r\n",
        id="body-undefined",
    ),
    pytest.param(
        b'Subject: body nul\r\nContent-Type: text/plain; charset="ut\x00f"\r\n\r\nx\r\n',
        id="body-nul-label",
    ),
    pytest.param(
        b"Subject: html\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/html; charset=undefined\r\n\r\n<p>x</p>\r\n--b--\r\n",
        id="html-part-undefined",
    ),
    pytest.param(b"Subject: =?idna?q?abc?=\r\n\r\nx\r\n", id="subject-idna"),
    pytest.param(b"Subject: =?undefined?q?abc?=\r\n\r\nx\r\n", id="subject-undefined"),
    # decode_header hands back the text around encoded words as raw-unicode-escape
    # bytes; a literal backslash-u in it is a truncated escape to that codec.
    pytest.param(
        b"Subject: C:\\users =?utf-8?q?caf=C3=A9?=\r\n\r\nx\r\n", id="subject-backslash-u"
    ),
]


@pytest.mark.parametrize("raw", ODD_CHARSETS)
def test_odd_charset_labels_are_stored_not_answered_with_451(
    inbound: InboundServer, runtime: Runtime, raw: bytes
) -> None:
    """A charset label that Python's codecs turn into a ValueError rather than a
    LookupError made storing the message raise: 451 to the sending MX, which retried
    for days, and a traceback in the log each time."""
    with smtplib.SMTP("127.0.0.1", inbound.port, timeout=30) as client:
        assert client.sendmail(OUTSIDER, [BOB], f"From: {OUTSIDER}\r\n".encode() + raw) == {}
    (stored,) = inbox(runtime, BOB)
    assert stored.raw.endswith(raw.split(b"\r\n\r\n", 1)[1])


def test_one_message_for_many_hosted_recipients_is_checked_once(
    runtime: Runtime, mail_users: dict[str, str], tmp_path: Path
) -> None:
    """MX write amplification: the mail log's "already encrypted" check parses the whole
    message, and ran again for every hosted recipient's copy, inside the one write
    transaction that stores them (max_recipients copies of a max_message_size message).
    It runs once per message now, before the transaction. Counted with the
    interpreter's own profile hook in every thread the MX server runs in, over SMTP."""
    home = tmp_path / "outsider"
    home.mkdir(mode=0o700)
    gpg = GnuPG(home)
    make_key(gpg, f"Outsider <{OUTSIDER}>")
    armored = gpg.run("--armor", "--encrypt", "--recipient", OUTSIDER, input=b"hi\r\n").stdout
    raw = (
        (
            f"From: {OUTSIDER}\r\nSubject: many\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted";'
            ' boundary="b"\r\n\r\n--b\r\nContent-Type: application/pgp-encrypted\r\n\r\n'
            "Version: 1\r\n\r\n--b\r\nContent-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + armored.replace(b"\n", b"\r\n")
        + b"\r\n--b--\r\n"
    )
    recipients = [f"user{n}@example.test" for n in range(20)]
    with db.transaction(runtime.sessions) as session:
        owner = accounts.find_account(session, BOB)
        assert owner is not None
        for address in recipients:
            accounts.add_address(
                session, runtime.hasher, address, owner, "pw-" + address, actor="t"
            )

    checks = [0]
    check = is_already_encrypted.__code__

    def profile(frame: FrameType, event: str, _arg: object) -> None:
        if event == "call" and frame.f_code is check:
            checks[0] += 1

    threading.setprofile(profile)  # every thread started from now on: the loop, its pool
    try:
        loop = LoopThread()
        server = InboundServer(runtime)
        try:
            loop.run(server.start())
            with smtplib.SMTP("127.0.0.1", server.port, timeout=60) as client:
                assert client.sendmail(OUTSIDER, recipients, raw) == {}
        finally:
            loop.run(server.stop(grace=5))
            loop.close()
    finally:
        threading.setprofile(None)  # type: ignore[arg-type]
    with db.read_only(runtime.sessions) as session:
        handlings = session.scalars(sa.select(MailLogEntry.handling)).all()
    assert handlings == ["passthrough"] * len(recipients)
    assert checks[0] == 1
