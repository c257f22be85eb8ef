"""An authenticated SMTP session stops sending once its login no longer holds.

Threat: AUTH was checked once per connection, and the identity it left (account,
addresses) was trusted for every later transaction. A mail program (or whoever stole
its password) that kept one connection open went on sending as the account after
the account was disabled, after the address password was changed, after the app
password it used was revoked, and after the address was deleted. Found by probing a
running `serve` (2026-12-06): `sealgate user disable` answered "disabled", and the
open connection queued the next message with 250.

Defence: every MAIL FROM checks the login again (`gateway.logins.still_valid`): the
account and its domain enabled, the address still the account's, and the credential
unchanged (the very stored hash verified, or the app password still there, and no
two-factor login turned on since for an address password). Otherwise 530 and the
session is no longer authenticated: a fresh AUTH goes through every check again.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from gateway import accounts, app_passwords, db
from gateway.admin import Actor
from gateway.admin import accounts as admin_accounts
from gateway.models import Account, Address, Domain, MailboxMessage
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer
from gateway.timeutil import utcnow
from tests.gateway.test_smtp_2fa import auth, enable_2fa, new_app_password, starttls_client

ALICE, BOB = "alice@example.test", "bob@example.test"
ACTOR = Actor("test")


@pytest.fixture(autouse=True)
def _recheck_at_every_transaction(test_env: dict[str, str]) -> None:
    """Every MAIL FROM asks again (the default waits a few seconds between two checks)."""
    test_env["SEALGATE_SECURITY_SESSION_RECHECK_SECONDS"] = "0"


def _message(subject: str) -> bytes:
    return f"From: {ALICE}\r\nTo: {BOB}\r\nSubject: {subject}\r\n\r\nHello.\r\n".encode()


def _disable(runtime: Runtime) -> None:
    with db.transaction(runtime.sessions) as session:
        admin_accounts.set_disabled(session, ALICE, True, actor=ACTOR, now=utcnow())


def _disable_domain(runtime: Runtime) -> None:
    with db.transaction(runtime.sessions) as session:
        domain = session.scalars(sa.select(Domain).where(Domain.name == "example.test")).one()
        domain.disabled_at = utcnow()


def _new_address_password(runtime: Runtime) -> None:
    with db.transaction(runtime.sessions) as session:
        address = session.scalars(sa.select(Address).where(Address.address == ALICE)).one()
        accounts.set_address_password(session, runtime.hasher, address, "a-new-pw", actor="t")


def _turn_on_2fa(runtime: Runtime) -> None:
    enable_2fa(runtime, ALICE)


def _delete_address(runtime: Runtime) -> None:
    with db.transaction(runtime.sessions) as session:
        admin_accounts.delete_address(session, ALICE, actor=ACTOR, now=utcnow())


CHANGES: dict[str, Callable[[Runtime], None]] = {
    "account disabled": _disable,
    "domain disabled": _disable_domain,
    "address password changed": _new_address_password,
    "two-factor login turned on": _turn_on_2fa,
    "address deleted": _delete_address,
}


def _stored_subjects(runtime: Runtime) -> list[str]:
    with runtime.sessions() as session:
        return list(session.scalars(sa.select(MailboxMessage.subject)))


@pytest.mark.parametrize("change", list(CHANGES))
def test_an_open_session_stops_when_its_login_no_longer_holds(
    change: str,
    submission_server: SubmissionServer,
    runtime: Runtime,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    with starttls_client(submission_server, client_ssl_context) as client:
        assert auth(client, ALICE, mail_users[ALICE])[0] == 235
        assert client.sendmail(ALICE, [BOB], _message("before")) == {}
        CHANGES[change](runtime)
        code, _ = client.docmd("MAIL", f"FROM:<{ALICE}>")
        assert code == 530
        # No longer authenticated: RCPT and DATA are refused too.
        assert client.docmd("RCPT", f"TO:<{BOB}>")[0] in (503, 530)
        # A new AUTH goes through every check again.
        assert auth(client, ALICE, mail_users[ALICE])[0] == 535
    assert "after" not in _stored_subjects(runtime)


def test_a_revoked_app_password_ends_its_open_session(
    submission_server: SubmissionServer,
    runtime: Runtime,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    enable_2fa(runtime, ALICE)
    app_id, app_password = new_app_password(runtime, ALICE, "phone")
    _, other_password = new_app_password(runtime, ALICE, "laptop")
    with (
        starttls_client(submission_server, client_ssl_context) as revoked,
        starttls_client(submission_server, client_ssl_context) as kept,
    ):
        assert auth(revoked, ALICE, app_password)[0] == 235
        assert auth(kept, ALICE, other_password)[0] == 235
        with db.transaction(runtime.sessions) as session:
            alice = session.scalars(sa.select(Account).where(Account.email == ALICE)).one()
            app_passwords.revoke(session, alice, app_id)
        assert revoked.docmd("MAIL", f"FROM:<{ALICE}>")[0] == 530
        # The account's other app password is untouched.
        assert kept.sendmail(ALICE, [BOB], _message("other-app-password")) == {}
    assert "other-app-password" in _stored_subjects(runtime)


def test_a_session_whose_login_holds_sends_on_and_sees_new_addresses(
    submission_server: SubmissionServer,
    runtime: Runtime,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    with starttls_client(submission_server, client_ssl_context) as client:
        assert auth(client, ALICE, mail_users[ALICE])[0] == 235
        assert client.sendmail(ALICE, [BOB], _message("one")) == {}
        with db.transaction(runtime.sessions) as session:
            alice = session.scalars(sa.select(Account).where(Account.email == ALICE)).one()
            accounts.add_address(
                session, runtime.hasher, "alice.two@example.test", alice, "pw-two", actor="t"
            )
        assert client.sendmail(ALICE, [BOB], _message("two")) == {}
        raw = _message("three").replace(ALICE.encode(), b"alice.two@example.test", 1)
        assert client.sendmail("alice.two@example.test", [BOB], raw) == {}
    assert {"one", "two", "three"} <= set(_stored_subjects(runtime))
