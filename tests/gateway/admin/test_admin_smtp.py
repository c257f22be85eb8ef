"""What admin changes do to SMTP, over real sockets: disabled domains and accounts, aliases.

Threat: a domain or account an admin disabled keeps taking or sending mail; an
alias that looks configured but loses mail.
"""

from __future__ import annotations

import datetime as dt
import smtplib
import ssl

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from gateway import db
from gateway.admin import Actor, maillog
from gateway.admin import accounts as admin_accounts
from gateway.admin import domains as admin_domains
from gateway.inbound import InboundServer
from gateway.models import Address, MailboxMessage
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer
from tests.webportal.conftest import csrf_from
from webportal import create_app

ADMIN = Actor("root@example.test", ip="192.0.2.1")
ALICE, BOB = "alice@example.test", "bob@example.test"


def mail(sender: str, rcpt: str) -> bytes:
    return f"From: {sender}\r\nTo: {rcpt}\r\nSubject: hi\r\n\r\nhello\r\n".encode()


def stored(runtime: Runtime, address: str) -> int:
    with db.read_only(runtime.sessions) as session:
        return int(
            session.scalar(
                sa.select(sa.func.count())
                .select_from(MailboxMessage)
                .join(Address, MailboxMessage.address_id == Address.id)
                .where(Address.address == address)
            )
            or 0
        )


def test_a_disabled_domain_takes_no_new_mail_with_a_clear_reply(
    runtime: Runtime,
    mail_users: dict[str, str],
    submission_server: SubmissionServer,
    inbound: InboundServer,
    client_ssl_context: ssl.SSLContext,
) -> None:
    with db.transaction(runtime.sessions) as session:
        admin_domains.add(session, "other.test", actor=ADMIN)
        carol = admin_accounts.create(
            session, runtime.settings, runtime.hasher, "carol@other.test", "carol-portal-pw",
            actor=ADMIN,
        )  # fmt: skip
        admin_accounts.add_address(
            session, runtime.hasher, "carol@other.test", carol.email, "carol-smtp-pw", actor=ADMIN
        )
        admin_domains.set_disabled(
            session, "example.test", True, actor=ADMIN, now=dt.datetime.now(dt.UTC)
        )
    # Inbound (MX): refused at RCPT, naming the domain.
    with smtplib.SMTP("127.0.0.1", inbound.port, timeout=30) as client:
        client.ehlo("mx.elsewhere.example")
        client.mail("news@elsewhere.example")
        code, reply = client.rcpt(BOB)
        assert code == 550 and b"5.7.1" in reply and b"example.test is disabled" in reply
    # Submission from another domain to it: refused at RCPT.
    with smtplib.SMTP_SSL(
        "127.0.0.1", submission_server.tls_port, context=client_ssl_context, timeout=30
    ) as client:
        client.login("carol@other.test", "carol-smtp-pw")
        client.mail("carol@other.test")
        code, reply = client.rcpt(BOB)
        assert code == 550 and b"accepts no new mail" in reply
    # Its own addresses cannot sign in to send, with a reply that says why.
    with smtplib.SMTP_SSL(
        "127.0.0.1", submission_server.tls_port, context=client_ssl_context, timeout=30
    ) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            client.login(ALICE, mail_users[ALICE])
        assert refused.value.smtp_code == 535 and b"disabled" in refused.value.smtp_error
    assert stored(runtime, BOB) == 0
    # Enabled again: mail flows.
    with db.transaction(runtime.sessions) as session:
        admin_domains.set_disabled(
            session, "example.test", False, actor=ADMIN, now=dt.datetime.now(dt.UTC)
        )
    with smtplib.SMTP("127.0.0.1", inbound.port, timeout=30) as client:
        assert client.sendmail("news@elsewhere.example", [BOB], mail("news@x.example", BOB)) == {}
    assert stored(runtime, BOB) == 1


def test_a_disabled_account_cannot_send_or_sign_in_but_still_receives(
    runtime: Runtime,
    mail_users: dict[str, str],
    submission_server: SubmissionServer,
    inbound: InboundServer,
    client_ssl_context: ssl.SSLContext,
) -> None:
    app = create_app(runtime, testing=True)
    client: FlaskClient = app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"

    def portal_login() -> str:
        token = csrf_from(client.get("/login").text)
        response = client.post(
            "/login",
            data={"email": ALICE, "password": "portal-alice-smtp-pw", "csrf_token": token},
        )
        return response.headers.get("Location", "")

    assert portal_login() == "/inbox"
    with db.transaction(runtime.sessions) as session:
        admin_accounts.set_disabled(session, ALICE, True, actor=ADMIN, now=dt.datetime.now(dt.UTC))
    # The open session ended; a new login is refused like a wrong password.
    assert client.get("/inbox").status_code == 302
    assert portal_login() == ""
    with smtplib.SMTP_SSL(
        "127.0.0.1", submission_server.tls_port, context=client_ssl_context, timeout=30
    ) as smtp:
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            smtp.login(ALICE, mail_users[ALICE])
        assert b"This account is disabled" in refused.value.smtp_error
    # The sign-in alerts of the logins above are stored in her mailbox too (issue 14).
    before = stored(runtime, ALICE)
    with smtplib.SMTP("127.0.0.1", inbound.port, timeout=30) as mx:
        assert mx.sendmail("news@elsewhere.example", [ALICE], mail("news@x.example", ALICE)) == {}
    assert stored(runtime, ALICE) == before + 1


def test_an_alias_delivers_to_its_address_once(
    runtime: Runtime,
    mail_users: dict[str, str],
    submission_server: SubmissionServer,
    inbound: InboundServer,
    client_ssl_context: ssl.SSLContext,
) -> None:
    with db.transaction(runtime.sessions) as session:
        admin_accounts.add_alias(session, "info@example.test", BOB, actor=ADMIN)
    with smtplib.SMTP("127.0.0.1", inbound.port, timeout=30) as mx:
        raw = mail("news@x.example", "info@example.test")
        assert mx.sendmail("news@x.example", ["info@example.test", BOB], raw) == {}
    with smtplib.SMTP_SSL(
        "127.0.0.1", submission_server.tls_port, context=client_ssl_context, timeout=30
    ) as smtp:
        smtp.login(ALICE, mail_users[ALICE])
        assert smtp.sendmail(ALICE, ["info@example.test"], mail(ALICE, "info@example.test")) == {}
    assert stored(runtime, BOB) == 2
    with db.transaction(runtime.sessions) as session:
        admin_accounts.remove_alias(session, "info@example.test", actor=ADMIN)
    with smtplib.SMTP("127.0.0.1", inbound.port, timeout=30) as mx:
        mx.ehlo("mx.x.example")
        mx.mail("news@x.example")
        code, _reply = mx.rcpt("info@example.test")
        assert code == 550


def test_mail_from_outside_is_in_the_mail_log(
    runtime: Runtime, mail_users: dict[str, str], inbound: InboundServer
) -> None:
    raw = (
        b"From: news@x.example\r\nTo: bob@example.test\r\nSubject: hi\r\n"
        b"Message-ID: <mx-1@x.example>\r\n\r\nhello\r\n"
    )
    with smtplib.SMTP("127.0.0.1", inbound.port, timeout=30) as mx:
        assert mx.sendmail("news@x.example", [BOB], raw) == {}
    with db.read_only(runtime.sessions) as session:
        found = maillog.search(session, 1, 10, address=BOB)
    [entry] = found.items
    assert (entry.sender, entry.message_id, entry.handling, entry.status) == (
        "news@x.example",
        "<mx-1@x.example>",
        "plain",
        maillog.DELIVERED,
    )
