"""SMTP submission over real sockets: TLS before AUTH, ownership, limits, delivery, smuggling."""

from __future__ import annotations

import base64
import smtplib
import ssl

import pytest
import sqlalchemy as sa

from gateway import accounts, db
from gateway.models import AuditEvent, MailboxMessage, QueueItem
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer
from keystore.models import StoredKey

ALICE, BOB = "alice@example.test", "bob@example.test"


def message(sender: str, rcpt: str, subject: str = "hello", body: str = "Hi there.\r\n") -> bytes:
    return (
        f"From: {sender}\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
        f"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{subject}@example.test>\r\n"
        f"\r\n{body}"
    ).encode()


def starttls_client(server: SubmissionServer, ctx: ssl.SSLContext) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", server.submission_port, timeout=30)
    client.ehlo("client.example")
    client.starttls(context=ctx)
    client.ehlo("client.example")
    return client


def tls_client(server: SubmissionServer, ctx: ssl.SSLContext) -> smtplib.SMTP_SSL:
    client = smtplib.SMTP_SSL("127.0.0.1", server.tls_port, timeout=30, context=ctx)
    client.ehlo("client.example")
    return client


def mailbox_rows(runtime: Runtime, address: str) -> list[MailboxMessage]:
    with db.transaction(runtime.sessions) as session:
        return list(
            session.scalars(
                sa.select(MailboxMessage)
                .join(MailboxMessage.address)
                .where(sa.text("addresses.address = :a"))
                .params(a=address)
            )
        )


def test_auth_not_offered_before_starttls(
    submission_server: SubmissionServer, mail_users: dict[str, str]
) -> None:
    with smtplib.SMTP("127.0.0.1", submission_server.submission_port, timeout=30) as client:
        code, _ = client.ehlo("client.example")
        assert code == 250
        assert client.has_extn("starttls")
        assert not client.has_extn("auth")
        code, reply = client.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1zbXRwLXB3")
        assert code == 530, reply
        code, _ = client.docmd("MAIL", f"FROM:<{ALICE}>")
        assert code == 530


@pytest.mark.parametrize("port", ["starttls", "tls"])
def test_auth_offered_under_tls_on_both_ports(
    port: str,
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    connect = starttls_client if port == "starttls" else tls_client
    with connect(submission_server, client_ssl_context) as client:
        assert "PLAIN" in client.esmtp_features["auth"]
        assert "LOGIN" in client.esmtp_features["auth"]
        assert client.has_extn("smtputf8") and client.has_extn("8bitmime")
        client.login(ALICE, mail_users[ALICE])
        refused = client.sendmail(ALICE, [BOB], message(ALICE, BOB, f"via-{port}"))
        assert refused == {}
    assert [m.subject for m in mailbox_rows(submission_server.runtime, BOB)] == [f"via-{port}"]


def test_auth_login_mechanism(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    with starttls_client(submission_server, client_ssl_context) as client:
        client.user, client.password = ALICE, mail_users[ALICE]
        code, reply = client.auth("LOGIN", client.auth_login, initial_response_ok=False)
        assert code == 235, reply


def test_wrong_password_is_refused_and_recorded(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    runtime: Runtime,
) -> None:
    with starttls_client(submission_server, client_ssl_context) as client:
        # smtplib's login() would try every mechanism in turn; make one attempt each.
        for login, password in ((ALICE, "not-the-password"), ("nobody@example.test", "x")):
            client.user, client.password = login, password
            with pytest.raises(smtplib.SMTPAuthenticationError) as err:
                client.auth("PLAIN", client.auth_plain)
            assert err.value.smtp_code == 535
        # A failed AUTH leaves the session unauthenticated.
        code, _ = client.docmd("MAIL", f"FROM:<{ALICE}>")
        assert code == 530
    with db.transaction(runtime.sessions) as session:
        events = session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == "smtp.auth").order_by(AuditEvent.id)
        ).all()
        assert [(e.target, e.success) for e in events] == [
            (ALICE, False),
            ("nobody@example.test", False),
        ]
        assert events[0].account_id is not None and events[1].account_id is None
        assert events[0].ip == "127.0.0.1"
        assert all("not-the-password" not in e.detail for e in events)


def test_auth_failures_per_client_are_limited(
    runtime: Runtime,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    loop_thread: object,
) -> None:
    from tests.conftest import LoopThread

    assert isinstance(loop_thread, LoopThread)
    limited = Runtime.open(runtime.settings.replace(smtp={"max_auth_failures_per_client": 2}))
    server = SubmissionServer(limited)
    loop_thread.run(server.start())
    try:
        with starttls_client(server, client_ssl_context) as client:
            for _ in range(2):
                with pytest.raises(smtplib.SMTPAuthenticationError):
                    client.login(ALICE, "wrong")
            # Now even the right password is turned away, temporarily.
            with pytest.raises(smtplib.SMTPAuthenticationError) as err:
                client.login(ALICE, mail_users[ALICE])
            assert err.value.smtp_code == 454
    finally:
        loop_thread.run(server.stop(grace=1))
        limited.close()


def test_sender_must_be_owned(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    with starttls_client(submission_server, client_ssl_context) as client:
        client.login(ALICE, mail_users[ALICE])
        code, reply = client.mail(BOB)
        assert code == 553, reply
        assert BOB.encode() in reply
        code, _ = client.mail("")
        assert code == 553


def test_oversize_message_is_refused_with_the_limit(
    runtime: Runtime,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    loop_thread: object,
) -> None:
    from tests.conftest import LoopThread

    assert isinstance(loop_thread, LoopThread)
    small = Runtime.open(runtime.settings.replace(smtp={"max_message_size": 4096}))
    server = SubmissionServer(small)
    loop_thread.run(server.start())
    try:
        with starttls_client(server, client_ssl_context) as client:
            assert client.esmtp_features["size"] == "4096"
            client.login(ALICE, mail_users[ALICE])
            big = message(ALICE, BOB, "big", "y" * 70 + "\r\n") + (b"y" * 70 + b"\r\n") * 100
            # Without SIZE, the limit bites while DATA streams in.
            assert client.mail(ALICE)[0] == 250 and client.rcpt(BOB)[0] == 250
            code, reply = client.data(big)
            assert code == 552 and b"4096" in reply
            # SIZE declared up front is refused at MAIL, with the limit too.
            client.rset()
            code, reply = client.mail(ALICE, ["SIZE=999999"])
            assert code == 552 and b"4096" in reply
            # The session stays usable: a small message still goes through.
            client.rset()
            assert client.sendmail(ALICE, [BOB], message(ALICE, BOB, "small")) == {}
    finally:
        loop_thread.run(server.stop(grace=1))
        small.close()
    assert [m.subject for m in mailbox_rows(runtime, BOB)] == ["small"]


def test_hosted_delivery_is_stored_with_received_header(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    raw = message(ALICE, BOB, "Grüsse aus Zürich", "Ünïcödé body\r\n")
    with starttls_client(submission_server, client_ssl_context) as client:
        client.login(ALICE, mail_users[ALICE])
        code, reply = client.mail(ALICE, ["SMTPUTF8", "BODY=8BITMIME"])
        assert code == 250
        assert client.rcpt(BOB)[0] == 250
        code, reply = client.data(raw)
        assert code == 250
        queue_id = reply.decode().rsplit(" ", 1)[1]
    (row,) = mailbox_rows(submission_server.runtime, BOB)
    assert row.queue_id == queue_id
    assert row.subject == "Grüsse aus Zürich"
    assert row.from_addr == ALICE and row.envelope_from == ALICE
    assert row.folder == "INBOX" and not row.encrypted
    head = row.raw.partition(b"\r\n\t")[0]
    assert head.startswith(b"Received: from client.example ([127.0.0.1])")
    assert row.raw.count(b"Received:") == 1
    assert row.raw.endswith(raw)
    assert f"id {queue_id}".encode() in row.raw and b"UTF8SMTPSA" in row.raw
    assert row.size == len(row.raw)


def test_unknown_hosted_recipient_is_refused_at_rcpt(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    with starttls_client(submission_server, client_ssl_context) as client:
        client.login(ALICE, mail_users[ALICE])
        client.mail(ALICE)
        code, _ = client.rcpt("ghost@example.test")
        assert code == 550
        code, _ = client.rcpt("not an address")
        assert code in (501, 553)


def test_external_recipient_is_queued_byte_for_byte(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    raw = message(ALICE, "carol@elsewhere.example", "out")
    with starttls_client(submission_server, client_ssl_context) as client:
        client.login(ALICE, mail_users[ALICE])
        assert client.sendmail(ALICE, ["carol@elsewhere.example", BOB], raw) == {}
    with db.transaction(submission_server.runtime.sessions) as session:
        (item,) = session.scalars(sa.select(QueueItem)).all()
    assert item.rcpt_to == "carol@elsewhere.example" and item.mail_from == ALICE
    assert item.raw.startswith(b"Received: ") and item.raw.endswith(raw)
    # Two recipients: the trace header must not name either (one could be Bcc).
    assert b"for <" not in item.raw[: len(item.raw) - len(raw)]
    assert len(mailbox_rows(submission_server.runtime, BOB)) == 1


SMUGGLING_PAYLOADS = [b"\n.\n", b"\r.\n", b"\n.\r\n", b"\r\n.\r", b"\n.\r"]


@pytest.mark.parametrize("terminator", SMUGGLING_PAYLOADS)
def test_smtp_smuggling_cannot_end_data_early(
    terminator: bytes,
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    """CVE-2023-51764 style: a fake end-of-data followed by a second, forged transaction."""
    smuggled = (
        b"From: " + ALICE.encode() + b"\r\nTo: " + BOB.encode() + b"\r\nSubject: outer\r\n\r\n"
        b"first part" + terminator + b"MAIL FROM:<" + ALICE.encode() + b">\r\n"
        b"RCPT TO:<" + BOB.encode() + b">\r\nDATA\r\nSubject: smuggled\r\n\r\ninjected\r\n"
    )
    with starttls_client(submission_server, client_ssl_context) as client:
        client.login(ALICE, mail_users[ALICE])
        client.mail(ALICE)
        client.rcpt(BOB)
        # Send raw bytes (smtplib.data would normalise bare CR/LF).
        client.putcmd("DATA")
        code, _ = client.getreply()
        assert code == 354
        client.send(smuggled + b"\r\n.\r\n")
        code, reply = client.getreply()
        assert code == 250, reply
        code, _ = client.noop()
        assert code == 250
    rows = mailbox_rows(submission_server.runtime, BOB)
    assert [r.subject for r in rows] == ["outer"]
    assert b"Subject: smuggled" in rows[0].raw  # carried inside the one message


def test_mime_too_deep_or_too_many_parts_is_refused(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    def nested(depth: int) -> bytes:
        head = b"From: alice@example.test\r\nSubject: deep\r\n"
        body = b"leaf\r\n"
        for level in range(depth, 0, -1):
            b = f"b{level}".encode()
            body = (
                b"Content-Type: multipart/mixed; boundary="
                + b
                + b"\r\n\r\n--"
                + b
                + b"\r\n"
                + body
                + b"\r\n--"
                + b
                + b"--\r\n"
            )
        return head + body

    many = (
        b"From: a@example.test\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n"
        + (b"--x\r\n\r\n" * 1001)
        + b"--x--\r\n"
    )
    with starttls_client(submission_server, client_ssl_context) as client:
        client.login(ALICE, mail_users[ALICE])
        for raw, word in ((nested(33), b"nested"), (nested(600), b"nested"), (many, b"parts")):
            with pytest.raises(smtplib.SMTPDataError) as err:
                client.sendmail(ALICE, [BOB], raw)
            assert err.value.smtp_code == 554, err.value.smtp_error
            assert err.value.smtp_error.startswith(b"5.6.0") and word in err.value.smtp_error
            client.rset()
        assert client.sendmail(ALICE, [BOB], nested(32)) == {}
    assert len(mailbox_rows(submission_server.runtime, BOB)) == 1


def test_internal_error_is_a_generic_temporary_failure(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def explode(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("secret internals /etc/sealgate")

    monkeypatch.setattr("gateway.groupcommit.store_all", explode)
    with starttls_client(submission_server, client_ssl_context) as client:
        client.login(ALICE, mail_users[ALICE])
        with pytest.raises(smtplib.SMTPDataError) as err:
            client.sendmail(ALICE, [BOB], message(ALICE, BOB))
        assert err.value.smtp_code == 451
        assert err.value.smtp_error.startswith(b"4.3.0")
        assert b"secret" not in err.value.smtp_error and b"Runtime" not in err.value.smtp_error
        assert client.noop()[0] == 250
    assert mailbox_rows(submission_server.runtime, BOB) == []


def test_idle_connections_time_out_and_connections_per_client_are_limited(
    runtime: Runtime,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    loop_thread: object,
) -> None:
    from tests.conftest import LoopThread

    assert isinstance(loop_thread, LoopThread)
    strict = Runtime.open(
        runtime.settings.replace(smtp={"idle_timeout": 1.0, "max_connections_per_client": 2})
    )
    server = SubmissionServer(strict)
    loop_thread.run(server.start())
    try:
        first = smtplib.SMTP("127.0.0.1", server.submission_port, timeout=30)
        second = smtplib.SMTP("127.0.0.1", server.submission_port, timeout=30)
        # A third concurrent connection from the same address is turned away at once.
        with pytest.raises(smtplib.SMTPConnectError) as err:
            smtplib.SMTP("127.0.0.1", server.submission_port, timeout=30)
        assert err.value.smtp_code == 421
        # An idle connection is closed by the server after idle_timeout.
        assert first.sock is not None
        first.sock.settimeout(30)
        assert first.sock.recv(1024).startswith(b"421")
        first.close()
        second.close()
        # With those gone, the address may connect again.
        with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=30) as third:
            assert third.noop()[0] == 250
    finally:
        loop_thread.run(server.stop(grace=1))
        strict.close()


def test_smtputf8_recipient_is_accepted(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    rcpt = "jürg@bücher.example"
    raw = f"From: {ALICE}\r\nTo: {rcpt}\r\nSubject: utf8\r\n\r\nhoi\r\n".encode()
    with starttls_client(submission_server, client_ssl_context) as client:
        client.login(ALICE, mail_users[ALICE])
        # Without SMTPUTF8 the address could not go on as it is (RFC 6531 §3.2).
        assert client.mail(ALICE)[0] == 250
        client.send(f"RCPT TO:<{rcpt}>\r\n".encode())
        code, text = client.getreply()
        assert code == 553 and text.startswith(b"5.6.7 ")
        client.rset()
        assert client.sendmail(ALICE, [rcpt], raw, mail_options=["SMTPUTF8"]) == {}
    with db.transaction(submission_server.runtime.sessions) as session:
        (item,) = session.scalars(sa.select(QueueItem)).all()
    assert item.rcpt_to == rcpt


@pytest.mark.parametrize(
    ("hosted", "written"),
    [
        ("anna@bücher.test", "anna@xn--bcher-kva.test"),
        ("anna@xn--mnchen-3ya.test", "anna@münchen.test"),
        # IDNA 2008: straße.test is xn--strae-oqa.test (strasse.test, added too, is not).
        ("anna@straße.test", "anna@xn--strae-oqa.test"),
    ],
    ids=["u-label-hosted", "a-label-hosted", "sharp-s-hosted"],
)
def test_an_idn_address_sends_in_either_form_of_its_domain(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    hosted: str,
    written: str,
) -> None:
    """Logged in as anna@bücher.test, `MAIL FROM:<anna@xn--bcher-kva.test>` (the only form
    a program without SMTPUTF8 may write, RFC 5321 2.3.5) got 553 5.7.1 "not one of your
    addresses", and so did the From header. Either form is hers; the envelope keeps
    what she wrote, and a domain IDNA 2003 merely maps onto hers is not hers."""
    runtime = submission_server.runtime
    with db.transaction(runtime.sessions) as session:
        accounts.add_domain(session, hosted.rpartition("@")[2], actor="test")
        account = accounts.add_account(session, runtime.hasher, hosted, "portal-pw-x", actor="t")
        accounts.add_address(session, runtime.hasher, hosted, account, "smtp-pw-x", actor="t")
        accounts.add_domain(session, "strasse.test", actor="test")
    carol = "carol@elsewhere.example"
    with starttls_client(submission_server, client_ssl_context) as client:
        # smtplib's login() encodes as ASCII; RFC 4616 credentials are UTF-8.
        plain = base64.b64encode(f"\0{hosted}\0smtp-pw-x".encode()).decode("ascii")
        code, reply = client.docmd("AUTH", f"PLAIN {plain}")
        assert code == 235, reply
        options = [] if written.isascii() else ["SMTPUTF8"]
        for foreign in ("anna@strasse.test", "anna@xn--bcher-kva.example", ALICE):
            code, reply = client.mail(foreign, ["SMTPUTF8"])
            assert code == 553, reply
        client.rset()
        assert client.sendmail(written, [carol], message(written, carol, "out"), options) == {}
        # Encrypted to Bob, signed with her key, a copy in her Sent folder.
        raw = message(written, BOB, "[Encrypt] idn")
        assert client.sendmail(written, [BOB], raw, options) == {}
    with db.transaction(runtime.sessions) as session:
        (item,) = session.scalars(sa.select(QueueItem)).all()
        key_addresses = set(session.scalars(sa.select(StoredKey.address)))
    assert item.mail_from == written and item.rcpt_to == carol
    [delivered] = mailbox_rows(runtime, BOB)
    assert delivered.encrypted and delivered.envelope_from == written
    # Her key and her Sent copy are those of her address as it is stored.
    assert hosted in key_addresses and written not in key_addresses
    assert [(row.folder, row.encrypted) for row in mailbox_rows(runtime, hosted)] == [
        ("Sent", True)
    ]
