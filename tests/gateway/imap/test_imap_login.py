"""IMAP logins follow the SMTP rules through the one login function: the same lockout
counter, the same two-factor rule (app passwords only), activity entries and alert mails."""

from __future__ import annotations

import imaplib
import smtplib
import ssl
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from gateway import db
from gateway.imap.notify import Notifier
from gateway.imap.server import ImapServer
from gateway.models import Address, AuditEvent, LoginLockout, MailboxMessage, QueueItem
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer
from tests.conftest import LoopThread
from tests.gateway.imap.conftest import ALICE, BOB
from tests.gateway.test_smtp_2fa import enable_2fa, new_app_password


@pytest.fixture
def strict(runtime: Runtime) -> Iterator[Runtime]:
    """Account lockout after 3 failures; the per-client limits out of the way."""
    rt = Runtime.open(
        runtime.settings.replace(
            security={"lockout_threshold": 3}, smtp={"max_auth_failures_per_client": 100}
        )
    )
    yield rt
    rt.close()


@pytest.fixture
def servers(
    strict: Runtime, loop_thread: LoopThread
) -> Iterator[tuple[ImapServer, SubmissionServer]]:
    imap = ImapServer(strict, Notifier())
    smtp = SubmissionServer(strict)
    loop_thread.run(imap.start())
    loop_thread.run(smtp.start())
    yield imap, smtp
    loop_thread.run(smtp.stop(grace=1))
    loop_thread.run(imap.stop())


def imap_login(server: ImapServer, ctx: ssl.SSLContext, login: str, password: str) -> str:
    """ "OK", or the refusal's text."""
    client = imaplib.IMAP4_SSL("127.0.0.1", server.tls_port, ssl_context=ctx)
    try:
        client.login(login, password)
    except imaplib.IMAP4.error as exc:
        client.shutdown()
        return str(exc)
    client.logout()
    return "OK"


def smtp_auth(server: SubmissionServer, ctx: ssl.SSLContext, login: str, password: str) -> int:
    """One AUTH PLAIN (smtplib's login() would try every mechanism in turn)."""
    with smtplib.SMTP_SSL("127.0.0.1", server.tls_port, context=ctx, timeout=30) as client:
        client.ehlo()
        client.user, client.password = login, password
        try:
            return client.auth("PLAIN", client.auth_plain)[0]
        except smtplib.SMTPAuthenticationError as exc:
            return exc.smtp_code


def test_imap_and_smtp_failures_count_towards_one_lockout(
    servers: tuple[ImapServer, SubmissionServer],
    strict: Runtime,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    imap, smtp = servers
    assert "AUTHENTICATIONFAILED" in imap_login(imap, client_ssl_context, ALICE, "guess-1")
    assert "AUTHENTICATIONFAILED" in imap_login(imap, client_ssl_context, ALICE, "guess-2")
    assert smtp_auth(smtp, client_ssl_context, ALICE, "guess-3") == 535
    # Three failures over two protocols: the account is locked for both.
    refused = imap_login(imap, client_ssl_context, ALICE, mail_users[ALICE])
    assert "UNAVAILABLE" in refused and "Too many failed logins" in refused
    assert smtp_auth(smtp, client_ssl_context, ALICE, mail_users[ALICE]) == 454
    assert imap_login(imap, client_ssl_context, BOB, mail_users[BOB]) == "OK"

    with db.read_only(strict.sessions) as session:
        [lock] = session.scalars(sa.select(LoginLockout)).all()
        events = session.scalars(
            sa.select(AuditEvent).where(AuditEvent.target == ALICE).order_by(AuditEvent.id)
        ).all()
        # Alerts to a hosted address are stored in its mailbox, never relayed (issue 14).
        alerts = session.scalars(
            sa.select(MailboxMessage)
            .join(Address, MailboxMessage.address_id == Address.id)
            .where(Address.address == ALICE)
        ).all()
        assert not session.scalars(sa.select(QueueItem).where(QueueItem.rcpt_to == ALICE)).all()
    assert lock.key.startswith("account:") and lock.locked_until is not None
    imap_events = [e for e in events if e.action == "imap.auth"]
    assert [e.success for e in imap_events] == [False, False, False]
    assert imap_events[-1].detail == "account locked" and imap_events[0].ip == "127.0.0.1"
    # One failed-login alert mail (rate-limited), as for a wrong portal password.
    assert len(alerts) == 1


def test_two_factor_accounts_log_in_with_app_passwords_only(
    servers: tuple[ImapServer, SubmissionServer],
    strict: Runtime,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    imap, _smtp = servers
    enable_2fa(strict, ALICE)
    _id, app_password = new_app_password(strict, ALICE, "Thunderbird")
    refused = imap_login(imap, client_ssl_context, ALICE, mail_users[ALICE])
    assert "two-factor login: use an app password" in refused
    assert imap_login(imap, client_ssl_context, ALICE, app_password) == "OK"
    with db.read_only(strict.sessions) as session:
        last = session.scalars(
            sa.select(AuditEvent)
            .where(AuditEvent.action == "imap.auth")
            .order_by(AuditEvent.id.desc())
            .limit(1)
        ).one()
    assert last.success and last.detail == "app password 'Thunderbird'"
