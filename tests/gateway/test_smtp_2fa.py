"""SMTP AUTH for accounts with two-factor login: app passwords only, and the 535 says so.

Threat: a phished address password bypassing the second factor through SMTP;
an app password that keeps working after it was revoked; guessing spread over
many connections and client addresses.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from gateway import app_passwords, db, totp
from gateway.models import Account, AppPassword, AuditEvent, LoginLockout, MailboxMessage
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer
from gateway.timeutil import utcnow
from tests.conftest import LoopThread

ALICE, BOB = "alice@example.test", "bob@example.test"
HINT = "5.7.8 This account uses two-factor login: use an app password"


def starttls_client(server: SubmissionServer, ctx: ssl.SSLContext) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", server.submission_port, timeout=30)
    client.ehlo("client.example")
    client.starttls(context=ctx)
    client.ehlo("client.example")
    return client


def auth(client: smtplib.SMTP, login: str, password: str) -> tuple[int, str]:
    """One AUTH PLAIN attempt (smtplib's login() would try every mechanism)."""
    client.user, client.password = login, password
    reply: bytes | str
    try:
        code, reply = client.auth("PLAIN", client.auth_plain)
    except smtplib.SMTPAuthenticationError as exc:
        code, reply = exc.smtp_code, exc.smtp_error
    return code, reply.decode() if isinstance(reply, bytes) else reply


def enable_2fa(runtime: Runtime, email: str) -> None:
    ring = totp.ring_for(runtime.settings)
    now = utcnow()
    with db.transaction(runtime.sessions) as session:
        account = session.scalars(sa.select(Account).where(Account.email == email)).one()
        secret = totp.start_enrolment(session, ring, account.id, now)
        code = totp.code_at(secret, totp.time_step(now))
        assert totp.confirm_enrolment(session, ring, account, code, now) is not None


def new_app_password(runtime: Runtime, email: str, name: str) -> tuple[int, str]:
    with db.transaction(runtime.sessions) as session:
        account = session.scalars(sa.select(Account).where(Account.email == email)).one()
        row, password = app_passwords.create(session, account, name, utcnow())
        return row.id, password


def message(subject: str) -> bytes:
    return (
        f"From: {ALICE}\r\nTo: {BOB}\r\nSubject: {subject}\r\n"
        f"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{subject}@example.test>\r\n"
        "\r\nHello.\r\n"
    ).encode()


def test_two_factor_account_needs_an_app_password(
    submission_server: SubmissionServer,
    runtime: Runtime,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    enable_2fa(runtime, ALICE)
    app_id, app_password = new_app_password(runtime, ALICE, "Thunderbird")

    with starttls_client(submission_server, client_ssl_context) as client:
        # The right address password is refused, and the reply says what to use.
        assert auth(client, ALICE, mail_users[ALICE]) == (535, HINT)
        code, _ = client.docmd("MAIL", f"FROM:<{ALICE}>")
        assert code == 530  # still not authenticated
        # A wrong password gets no hint: the hint would name accounts with 2FA.
        assert auth(client, ALICE, "wrong") == (535, "5.7.8 Authentication credentials invalid")

    with starttls_client(submission_server, client_ssl_context) as client:
        # The app password works, shown form (with spaces) included.
        shown = app_passwords.format_for_display(app_password)
        assert auth(client, ALICE, shown)[0] == 235
        assert client.sendmail(ALICE, [BOB], message("via-app-password")) == {}

    with runtime.sessions() as session:
        subjects = session.scalars(sa.select(MailboxMessage.subject)).all()
        assert "via-app-password" in subjects
        used = session.get(AppPassword, app_id)
        assert used is not None and used.last_used_at is not None
        assert used.last_used_ip == "127.0.0.1"
        events = session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == "smtp.auth").order_by(AuditEvent.id)
        ).all()
    assert [(e.success, e.detail) for e in events] == [
        (False, "two-factor login: no app password"),
        (False, ""),
        (True, "app password 'Thunderbird'"),
    ]
    assert all(app_password not in e.detail for e in events)

    with db.transaction(runtime.sessions) as session:
        alice = session.scalars(sa.select(Account).where(Account.email == ALICE)).one()
        app_passwords.revoke(session, alice, app_id)
    with starttls_client(submission_server, client_ssl_context) as client:
        # A revoked app password is a wrong password like any other.
        assert auth(client, ALICE, app_password) == (
            535,
            "5.7.8 Authentication credentials invalid",
        )


def test_accounts_without_2fa_keep_address_passwords_and_may_use_app_passwords(
    submission_server: SubmissionServer,
    runtime: Runtime,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    enable_2fa(runtime, ALICE)
    _, bobs_app_password = new_app_password(runtime, BOB, "phone")
    _, alices_app_password = new_app_password(runtime, ALICE, "laptop")
    with starttls_client(submission_server, client_ssl_context) as client:
        assert auth(client, BOB, mail_users[BOB])[0] == 235
    with starttls_client(submission_server, client_ssl_context) as client:
        assert auth(client, BOB, bobs_app_password)[0] == 235
    with starttls_client(submission_server, client_ssl_context) as client:
        # Alice's app password does not open Bob's address.
        code, reply = auth(client, BOB, alices_app_password)
        assert (code, reply) == (535, "5.7.8 Authentication credentials invalid")


@pytest.fixture
def strict_server(runtime: Runtime, loop_thread: LoopThread) -> Iterator[SubmissionServer]:
    """Account lockout after 3 failures; the per-client limit out of the way."""
    strict = Runtime.open(
        runtime.settings.replace(
            security={"lockout_threshold": 3}, smtp={"max_auth_failures_per_client": 100}
        )
    )
    server = SubmissionServer(strict)
    loop_thread.run(server.start())
    yield server
    loop_thread.run(server.stop(grace=1))
    strict.close()


def test_smtp_lockout_counts_per_account_across_connections(
    strict_server: SubmissionServer,
    runtime: Runtime,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    for _ in range(3):
        with starttls_client(strict_server, client_ssl_context) as client:
            assert auth(client, ALICE, "guess")[0] == 535
    with starttls_client(strict_server, client_ssl_context) as client:
        code, reply = auth(client, ALICE, mail_users[ALICE])
        assert (code, reply) == (
            454,
            "4.7.0 Too many failed logins for this account; try again later",
        )
        # Another account is not affected.
        assert auth(client, BOB, mail_users[BOB])[0] == 235
    with db.transaction(runtime.sessions) as session:
        [row] = session.scalars(sa.select(LoginLockout)).all()
        alice = session.scalars(sa.select(Account).where(Account.email == ALICE)).one()
    # Counted in the shared database under the account: one count for every protocol.
    assert row.key == f"account:{alice.id}" and row.locked_until is not None
