"""A mail program's right login does not wipe the guesses counted against the account.

Threat: an attacker guesses the portal password, or (with a phished password) the
six digits of the second factor, a few tries below the lockout threshold at a time.
Meanwhile the owner's phone logs in over IMAP or SMTP every few minutes with its
address password or app password. If each of those successes cleared the account's
one count, the lockout would never trip and only the per-client limit (which an
attacker with many addresses does not meet) would slow the guessing. A mail
program's login proves its own credential, not the account password or the code:
only a portal login that passed every factor clears the count.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from gateway import app_passwords, db, logins
from gateway.models import Account
from gateway.runtime import Runtime
from webportal import create_app
from webportal.clock import set_clock

from .account_support import ALICE, ALICE_PW, Browser, FakeClock, enable_2fa

THRESHOLD = 3
OWNER_IP = "203.0.113.5"
ATTACKER_IP = "198.51.100.66"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def strict(runtime: Runtime, clock: FakeClock) -> Iterator[tuple[Runtime, Browser, Browser]]:
    """Lock after three failures; the per-client limit out of the way; an owner's and an
    attacker's browser on one portal."""
    rt = Runtime.open(
        runtime.settings.replace(
            security={"lockout_threshold": THRESHOLD}, portal={"login_rate_limit": "1000/minute"}
        )
    )
    app = create_app(rt, testing=True)
    set_clock(app, clock)
    owner = Browser(app.test_client(), ip=OWNER_IP)
    attacker = Browser(app.test_client(), ip=ATTACKER_IP)
    yield rt, owner, attacker
    rt.close()


def mail_program_login(
    rt: Runtime, protocol: logins.Protocol, password: str, clock: FakeClock
) -> None:
    """The owner's phone logging in, through the one login function SMTP and IMAP use."""
    result = logins.check_for(
        rt, logins.Attempt(protocol, ALICE, password, OWNER_IP), now=clock.now
    )
    assert result.ok, result


def test_wrong_passwords_stay_counted_across_a_mail_program_login(
    strict: tuple[Runtime, Browser, Browser], mail_users: dict[str, str], clock: FakeClock
) -> None:
    rt, _owner, attacker = strict
    for _ in range(THRESHOLD - 1):
        assert "Email or password is wrong." in attacker.login(ALICE, "guess").text
    mail_program_login(rt, "IMAP", mail_users[ALICE], clock)
    clock.advance(seconds=30)
    assert "Email or password is wrong." in attacker.login(ALICE, "guess").text
    # The third failure locked the account: even the right password is refused now.
    assert "Too many failed sign-ins" in attacker.login(ALICE, ALICE_PW).text


def test_wrong_codes_stay_counted_across_an_app_password_login(
    strict: tuple[Runtime, Browser, Browser], mail_users: dict[str, str], clock: FakeClock
) -> None:
    rt, owner, attacker = strict
    owner.login()
    secret, _ = enable_2fa(owner, clock)
    with db.transaction(rt.sessions) as session:
        account = session.scalars(sa.select(Account).where(Account.email == ALICE)).one()
        _row, app_password = app_passwords.create(session, account, "phone", clock.now)
    clock.advance(seconds=60)

    # The attacker knows the password and guesses codes, a few at a time.
    assert attacker.login().headers["Location"] == "/login/code"
    for _ in range(THRESHOLD - 1):
        assert "The code is wrong" in attacker.code("000000").text
    mail_program_login(rt, "SMTP", app_password, clock)
    assert "The code is wrong" in attacker.code("000000").text
    # Locked: the right code does not get in either.
    clock.advance(seconds=30)
    refused = attacker.code(clock.code(secret))
    assert refused.status_code == 302 and refused.headers["Location"] == "/login"
    assert attacker.get("/inbox").status_code == 302
