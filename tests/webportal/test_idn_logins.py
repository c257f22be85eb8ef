"""A login under an IDN domain is one login in both forms of the domain (A-label and
U-label), over SMTP AUTH, IMAP and the portal, and counts as one login.

Threat, both ways: a user whose account is `anna@straße.test` cannot log in from a mail
program that sends the ASCII form `anna@xn--strae-oqa.test` (smtplib and imaplib send
nothing else), or a look-alike (`strasse.test`, full-width letters) logs in as her; and
an attacker who alternates the two forms of one name doubles the guesses the lockout
allows.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from gateway import accounts, db, logins
from gateway.imap.notify import Notifier
from gateway.imap.server import ImapServer
from gateway.models import LoginLockout
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer
from gateway.timeutil import utcnow
from tests.conftest import LoopThread
from tests.gateway.imap.test_imap_login import imap_login, smtp_auth

from .conftest import LoginFn

# Stored in the U-label form, and in the A-label form.
ANNA, ANNA_ASCII = "anna@straße.test", "anna@xn--strae-oqa.test"
BEN, BEN_UNICODE = "ben@xn--bcher-kva.test", "ben@bücher.test"
LOOK_ALIKES = ["anna@strasse.test", "anna@xn--strasse-.test", "anna@ｓtraße.test"]
THRESHOLD = 4


def portal_password(address: str) -> str:
    return "portal-" + address.partition("@")[0]


def mail_password(address: str) -> str:
    return "mail-" + address.partition("@")[0]


@pytest.fixture
def strict(runtime: Runtime) -> Iterator[Runtime]:
    rt = Runtime.open(
        runtime.settings.replace(
            security={"lockout_threshold": THRESHOLD},
            smtp={"max_auth_failures_per_client": 100},
            portal={"login_rate_limit": "1000/minute"},
        )
    )
    with db.transaction(rt.sessions) as session:
        for address in (ANNA, BEN):
            accounts.add_domain(session, address.partition("@")[2], actor="test")
            account = accounts.add_account(
                session, rt.hasher, address, portal_password(address), actor="test"
            )
            accounts.add_address(
                session, rt.hasher, address, account, mail_password(address), actor="test"
            )
    yield rt
    rt.close()


def check(rt: Runtime, protocol: logins.Protocol, login: str, password: str) -> logins.LoginResult:
    attempt = logins.Attempt(protocol, login, password, "192.0.2.9")
    return logins.check_for(rt, attempt, now=utcnow())


@pytest.mark.parametrize("protocol", logins.PROTOCOLS)
@pytest.mark.parametrize(("stored", "typed"), [(ANNA, ANNA_ASCII), (BEN, BEN_UNICODE)])
def test_the_other_form_logs_in_as_the_stored_name(
    strict: Runtime, protocol: logins.Protocol, stored: str, typed: str
) -> None:
    password = portal_password(stored) if protocol == "portal" else mail_password(stored)
    for login in (typed, typed.upper(), stored):
        result = check(strict, protocol, login, password)
        assert result.ok, (login, result)
        assert result.login == stored


@pytest.mark.parametrize("protocol", logins.PROTOCOLS)
@pytest.mark.parametrize("typed", LOOK_ALIKES)
def test_a_look_alike_is_no_login(strict: Runtime, protocol: logins.Protocol, typed: str) -> None:
    password = portal_password(ANNA) if protocol == "portal" else mail_password(ANNA)
    result = check(strict, protocol, typed, password)
    assert not result.ok and result.known_account_id is None


@pytest.mark.parametrize(
    "names",
    [
        (ANNA, ANNA_ASCII),
        ("nobody@straße.test", "nobody@xn--strae-oqa.test"),
        ("nobody@elsewhere.bücher.test", "nobody@elsewhere.xn--bcher-kva.test"),
    ],
)
def test_alternating_the_forms_locks_after_the_same_number_of_guesses(
    strict: Runtime, names: tuple[str, str]
) -> None:
    protocols = logins.PROTOCOLS
    for attempt in range(THRESHOLD):
        result = check(strict, protocols[attempt % 3], names[attempt % 2], "guess")
        assert result.refusal == "wrong", attempt
    for name in names:
        for protocol in protocols:
            assert check(strict, protocol, name, "guess").refusal == "locked", (name, protocol)
    with db.read_only(strict.sessions) as session:
        assert len(session.scalars(sa.select(LoginLockout.key)).all()) == 1


def test_mail_programs_log_in_with_the_ascii_form(
    strict: Runtime, loop_thread: LoopThread, client_ssl_context: ssl.SSLContext
) -> None:
    """imaplib and smtplib send only ASCII: the A-label is how her mail program logs in."""
    imap, smtp = ImapServer(strict, Notifier()), SubmissionServer(strict)
    loop_thread.run(imap.start())
    loop_thread.run(smtp.start())
    try:
        assert imap_login(imap, client_ssl_context, ANNA_ASCII, mail_password(ANNA)) == "OK"
        assert smtp_auth(smtp, client_ssl_context, ANNA_ASCII, mail_password(ANNA)) == 235
        assert imap_login(imap, client_ssl_context, BEN, mail_password(BEN)) == "OK"
    finally:
        loop_thread.run(smtp.stop(grace=1))
        loop_thread.run(imap.stop())


def test_the_portal_logs_in_under_the_other_form(
    strict: Runtime, client: FlaskClient, login: LoginFn
) -> None:
    response = login(ANNA_ASCII, portal_password(ANNA))
    assert response.status_code == 302 and response.headers["Location"] == "/inbox"
    assert f"Signed in as {ANNA}" in client.get("/inbox").text
