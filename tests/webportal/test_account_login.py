"""Portal login with a second factor, lockout, and alert mails.

Threats: a stolen password used on its own; a code replayed; guessing spread
over time; an attacker telling real accounts from unknown ones by the answer or
by its cost; logins the owner never hears about.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.policy
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from gateway import accounts, db, lockout
from gateway.models import Account, Address, AuditEvent, MailboxMessage, PortalSession
from gateway.relay import Relay
from gateway.runtime import Runtime
from tests.fakes.smarthost import FakeSmarthost, relay_settings_for
from webportal import create_app
from webportal.clock import set_clock

from .account_support import (
    ALICE,
    ALICE_PW,
    CHROME,
    FIREFOX,
    Browser,
    FakeClock,
    enable_2fa,
    queued,
    text_of,
)
from .test_login import normalized


@pytest.fixture
def clock(app: Flask) -> FakeClock:
    fake = FakeClock()
    set_clock(app, fake)
    return fake


@pytest.fixture
def browser(client: FlaskClient, clock: FakeClock) -> Browser:
    return Browser(client)


@pytest.fixture
def strict(runtime: Runtime, clock: FakeClock) -> Iterator[tuple[Runtime, Browser]]:
    """Lockout after 3 failures; the per-client rate limit out of the way."""
    rt = Runtime.open(
        runtime.settings.replace(
            security={"lockout_threshold": 3}, portal={"login_rate_limit": "1000/minute"}
        )
    )
    app = create_app(rt, testing=True)
    set_clock(app, clock)
    yield rt, Browser(app.test_client())
    rt.close()


def events(runtime: Runtime, *actions: str) -> list[AuditEvent]:
    with runtime.sessions() as session:
        return list(
            session.scalars(
                sa.select(AuditEvent).where(AuditEvent.action.in_(actions)).order_by(AuditEvent.id)
            )
        )


def test_two_step_login_replay_and_recovery_codes(
    browser: Browser, clock: FakeClock, runtime: Runtime, mail_users: dict[str, str]
) -> None:
    assert browser.login().status_code == 302
    secret, codes = enable_2fa(browser, clock)
    browser.logout()

    clock.advance(seconds=60)
    parked = browser.login()
    assert parked.status_code == 302 and parked.headers["Location"] == "/login/code"
    # The right password alone opens nothing.
    assert browser.get("/inbox").headers["Location"].startswith("/login")
    page = browser.get("/login/code")
    assert page.status_code == 200 and 'autocomplete="one-time-code"' in page.text
    code = clock.code(secret)
    done = browser.code(code)
    assert done.status_code == 302 and done.headers["Location"] == "/inbox"
    assert browser.get("/inbox").status_code == 200
    browser.logout()

    # The same code again, within its 30 s: refused.
    assert browser.login().headers["Location"] == "/login/code"
    replay = browser.code(code)
    assert replay.status_code == 200
    assert "The code is wrong or was already used." in replay.text
    assert browser.get("/inbox").status_code == 302

    # A recovery code instead: once.
    assert browser.code(codes[0]).headers["Location"] == "/inbox"
    assert "You signed in with a recovery code." in browser.get("/inbox").text
    browser.logout()
    browser.login()
    assert "The code is wrong or was already used." in browser.code(codes[0]).text
    assert browser.get("/inbox").status_code == 302

    logins = events(runtime, "login", "login.password", "2fa.recovery_code_used")
    assert [(e.action, e.success, e.detail) for e in logins] == [
        ("login", True, ""),
        ("login.password", True, "second factor required"),
        ("login", True, ""),
        ("login.password", True, "second factor required"),
        ("login", False, "wrong second-factor code"),
        ("2fa.recovery_code_used", True, "9 left"),
        ("login", True, "with a recovery code"),
        ("login.password", True, "second factor required"),
        ("login", False, "wrong second-factor code"),
    ]


def test_a_parked_password_expires(
    browser: Browser, clock: FakeClock, runtime: Runtime, mail_users: dict[str, str]
) -> None:
    browser.login()
    secret, _ = enable_2fa(browser, clock)
    browser.logout()
    clock.advance(seconds=60)
    browser.login()
    clock.advance(minutes=6)
    late = browser.post("/login/code", {"code": clock.code(secret)}, page="/login")
    assert late.status_code == 302 and late.headers["Location"] == "/login"
    assert "The sign-in took too long." in browser.get("/login").text
    assert browser.get("/inbox").status_code == 302


def test_the_code_page_without_a_password_sends_to_login(browser: Browser) -> None:
    response = browser.get("/login/code")
    assert response.status_code == 302 and response.headers["Location"] == "/login"


def test_wrong_codes_lock_the_account(
    strict: tuple[Runtime, Browser], mail_users: dict[str, str], clock: FakeClock
) -> None:
    runtime, browser = strict
    browser.login()
    secret, _ = enable_2fa(browser, clock)
    browser.logout()
    threshold = runtime.settings.security.lockout_threshold
    browser.login()
    for _ in range(threshold):
        assert browser.code("000000").status_code == 200
    # Now even the right code is refused, and the password too.
    clock.advance(seconds=30)
    refused = browser.code(clock.code(secret))
    assert refused.status_code == 302 and refused.headers["Location"] == "/login"
    assert "Too many failed sign-ins" in browser.get("/login").text
    locked = browser.login()
    assert locked.status_code == 200 and "Too many failed sign-ins" in locked.text
    assert browser.get("/inbox").status_code == 302
    # Only the first failure mailed the owner (one failed-login alert per 15 minutes),
    # and it says the password was right.
    assert queued(runtime) == []  # alice is hosted: her alerts are in her mailbox
    mails = alerts_in_inbox(runtime)
    failed = [m for m in mails if m["Subject"] == "Failed sign-in to your sealgate account"]
    assert len(failed) == 1
    body = failed[0].get_body(("plain",))
    assert body is not None and "your password is known to someone else" in body.get_content()


class CountingArgon2:
    """Stands in for argon2-cffi's hasher (which cannot be patched) and notes each verify."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.runs: list[str] = []

    def verify(self, stored: str, password: bytes) -> bool:
        self.runs.append(stored[:10])
        result: bool = self.inner.verify(stored, password)
        return result


def test_unknown_account_and_wrong_password_look_the_same_and_both_pay_argon2(
    runtime: Runtime, mail_users: dict[str, str], browser: Browser
) -> None:
    """Must show 4: same page, same status; the unknown account runs a real Argon2 verify."""
    calls: list[str | None] = []
    real_verify = runtime.hasher.verify

    def spy(stored_hash: str | None, password: str) -> bool:
        calls.append(stored_hash)
        return real_verify(stored_hash, password)

    # flask-login marks a new cookie session "not fresh" on its second request, which
    # sets a cookie once; get that behind us so both answers start from the same state.
    browser.get("/login")
    browser.get("/login")
    argon2 = CountingArgon2(runtime.hasher._hasher)
    runtime.hasher.verify = spy  # type: ignore[method-assign]
    runtime.hasher._hasher = argon2  # type: ignore[assignment]
    try:
        wrong = browser.login(ALICE, "not-the-password")
        unknown = browser.login("nobody@example.test", "not-the-password")
    finally:
        del runtime.hasher.verify
        runtime.hasher._hasher = argon2.inner

    assert wrong.status_code == unknown.status_code == 200
    assert "Email or password is wrong." in wrong.text
    assert normalized(wrong.text, ALICE) == normalized(unknown.text, "nobody@example.test")
    assert set(wrong.headers.keys()) == set(unknown.headers.keys())
    # The unknown account went through verify with no hash (the dummy path)...
    assert len(calls) == 2 and calls[0] is not None and calls[1] is None
    # ...and that path really ran Argon2id, against the dummy hash.
    assert argon2.runs == ["$argon2id$", "$argon2id$"]


def test_lockout_locks_known_and_unknown_names_alike(
    strict: tuple[Runtime, Browser], mail_users: dict[str, str], clock: FakeClock
) -> None:
    runtime, browser = strict
    threshold = runtime.settings.security.lockout_threshold
    for email_address in (ALICE, "nobody@example.test"):
        for _ in range(threshold):
            assert "Email or password is wrong." in browser.login(email_address, "guess").text
    right = browser.login(ALICE, ALICE_PW)
    unknown = browser.login("nobody@example.test", ALICE_PW)
    assert right.status_code == unknown.status_code == 200
    assert "Too many failed sign-ins" in right.text
    assert normalized(right.text, ALICE) == normalized(unknown.text, "nobody@example.test")
    assert browser.get("/inbox").status_code == 302
    # The lock ends on its own...
    clock.advance(seconds=runtime.settings.security.lockout_first + 1)
    assert browser.login(ALICE, ALICE_PW).status_code == 302
    # ...and a success starts the count afresh.
    browser.logout()
    assert "Email or password is wrong." in browser.login(ALICE, "guess").text
    assert browser.login(ALICE, ALICE_PW).status_code == 302


def test_admin_unlock_lets_the_right_password_in(
    strict: tuple[Runtime, Browser], mail_users: dict[str, str]
) -> None:
    runtime, browser = strict
    for _ in range(runtime.settings.security.lockout_threshold):
        browser.login(ALICE, "guess")
    assert "Too many failed sign-ins" in browser.login(ALICE, ALICE_PW).text
    with db.transaction(runtime.sessions) as session:
        account = accounts.find_account(session, ALICE)
        assert account is not None
        lockout.store_for(session, runtime.settings.security).clear(lockout.account_key(account.id))
    assert browser.login(ALICE, ALICE_PW).status_code == 302


def test_lockout_counters_in_redis(
    runtime: Runtime, mail_users: dict[str, str], clock: FakeClock
) -> None:
    import secrets

    settings = runtime.settings.replace(
        security={"lockout_storage": "redis://127.0.0.1:6379/0", "lockout_threshold": 2}
    )
    rt = Runtime.open(settings)
    try:
        app = create_app(rt, testing=True)
        set_clock(app, clock)
        # A name of our own, so counters other runs left in Redis do not count.
        name = f"nobody-{secrets.token_hex(4)}@example.test"
        other_app = create_app(rt, testing=True)  # a second portal process, in effect
        set_clock(other_app, clock)
        first = Browser(app.test_client())
        second = Browser(other_app.test_client())
        first.login(name, "guess")
        second.login(name, "guess")
        assert "Too many failed sign-ins" in first.login(name, "guess").text
        with rt.sessions() as session:
            assert session.execute(sa.text("SELECT count(*) FROM login_lockouts")).scalar() == 0
    finally:
        rt.close()


@pytest.fixture
def relaying(
    runtime: Runtime, smarthost: FakeSmarthost, clock: FakeClock
) -> Iterator[tuple[Runtime, Flask]]:
    rt = dataclasses.replace(runtime, settings=relay_settings_for(runtime.settings, smarthost))
    app = create_app(rt, testing=True)
    set_clock(app, clock)
    yield rt, app


def deliver(rt: Runtime, clock: FakeClock) -> int:
    """Run one relay sweep at the test's time; how many mails left the queue."""
    return len(asyncio.run(Relay(rt, clock=clock).sweep()))


def alerts_in_inbox(rt: Runtime, address: str = ALICE) -> list[EmailMessage]:
    """The alert mails stored in `address`'s inbox, oldest first."""
    with rt.sessions() as session:
        raws = session.scalars(
            sa.select(MailboxMessage.raw)
            .join(Address, MailboxMessage.address_id == Address.id)
            .where(Address.address == address, MailboxMessage.envelope_from == "noreply@localhost")
            .order_by(MailboxMessage.id)
        ).all()
    return [email.message_from_bytes(raw, policy=email.policy.default) for raw in raws]


def test_alert_mails_reach_the_own_mailbox_once_per_kind_per_quarter_hour(
    relaying: tuple[Runtime, Flask],
    mail_users: dict[str, str],
    smarthost: FakeSmarthost,
    clock: FakeClock,
) -> None:
    """Must show 3; an alert to a hosted address is stored locally, never relayed."""
    rt, app = relaying
    firefox = Browser(app.test_client(), ip="203.0.113.5", agent=FIREFOX)
    assert firefox.login().status_code == 302
    assert deliver(rt, clock) == 0  # nothing for the relay: it is in the mailbox already
    [parsed] = alerts_in_inbox(rt)
    assert parsed["Subject"] == "New sign-in to your sealgate account"
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["To"] == ALICE
    body = parsed.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "203.0.113.5" in text and "Firefox on Linux" in text
    assert "https://localhost:8080/account/activity" in text

    # Ten minutes later, a new place and a new browser: no second mail of that kind.
    clock.advance(minutes=10)
    chrome = Browser(app.test_client(), ip="192.0.2.44", agent=CHROME)
    assert chrome.login().status_code == 302
    assert len(alerts_in_inbox(rt)) == 1

    # A wrong password: one failed-login mail; a second one right after: none.
    stranger = Browser(app.test_client(), ip="192.0.2.45", agent=CHROME)
    assert stranger.login(ALICE, "wrong").status_code == 200
    assert stranger.login(ALICE, "wrong again").status_code == 200
    [_, failed] = alerts_in_inbox(rt)
    assert failed["Subject"] == "Failed sign-in to your sealgate account"
    body = failed.get_body(("plain",))
    assert body is not None and "with a wrong password" in body.get_content()

    # A wrong password for an unknown account mails nobody.
    stranger.login("nobody@example.test", "wrong")
    # After 15 minutes a new device alerts again; a known one never does.
    clock.advance(minutes=16)
    firefox.logout()
    assert firefox.login().status_code == 302  # known device
    assert len(alerts_in_inbox(rt)) == 2
    Browser(app.test_client(), ip="2001:db8:9::1", agent=FIREFOX).login()
    assert len(alerts_in_inbox(rt)) == 3
    assert deliver(rt, clock) == 0
    assert smarthost.messages == []


def test_an_account_outside_the_hosted_domains_gets_its_alerts_through_the_relay(
    relaying: tuple[Runtime, Flask],
    mail_users: dict[str, str],
    smarthost: FakeSmarthost,
    clock: FakeClock,
) -> None:
    rt, app = relaying
    outside = "erin@outside.example"
    with db.transaction(rt.sessions) as session:
        accounts.add_account(session, rt.hasher, outside, "erin-portal-pw", actor="test")
    assert Browser(app.test_client()).login(outside, "erin-portal-pw").status_code == 302
    assert deliver(rt, clock) == 1
    [mail] = smarthost.wait_for(1)
    assert mail.rcpt_tos == (outside,) and mail.mail_from == "noreply@localhost" and mail.tls
    parsed = email.message_from_bytes(mail.content, policy=email.policy.default)
    assert parsed["Subject"] == "New sign-in to your sealgate account"


def test_alerts_come_in_the_accounts_language_and_can_be_switched_off(
    relaying: tuple[Runtime, Flask],
    mail_users: dict[str, str],
    smarthost: FakeSmarthost,
    clock: FakeClock,
) -> None:
    rt, app = relaying
    with db.transaction(rt.sessions) as session:
        session.execute(sa.text("UPDATE accounts SET language = 'de'"))
    browser = Browser(app.test_client(), ip="203.0.113.5")
    browser.login()
    [parsed] = alerts_in_inbox(rt)
    assert parsed["Subject"] == "Neue Anmeldung bei Ihrem sealgate-Konto"
    body = parsed.get_body(("plain",))
    assert body is not None and "Firefox unter Linux" in body.get_content()

    settings_page = browser.get("/account/security")
    assert "Warn-E-Mails" in settings_page.text
    saved = browser.post("/account/alerts", {"failed_login": "on"}, page="/account/security")
    assert saved.status_code == 302
    assert "Ihre Einstellungen für Warnungen wurden gespeichert." in text_of(
        browser.get("/account/security").text
    )
    browser.logout()
    clock.advance(minutes=20)
    Browser(app.test_client(), ip="192.0.2.1", agent=CHROME).login()
    assert len(alerts_in_inbox(rt)) == 1  # new-device alerts are off
    Browser(app.test_client(), ip="192.0.2.1", agent=CHROME).login(ALICE, "wrong")
    assert len(alerts_in_inbox(rt)) == 2  # failed-login alerts are still on


def test_every_login_leaves_a_session_row(
    browser: Browser, runtime: Runtime, mail_users: dict[str, str]
) -> None:
    browser.login()
    with runtime.sessions() as session:
        [row] = session.scalars(sa.select(PortalSession)).all()
    assert (row.ip, row.user_agent, row.ended_at) == ("198.51.100.7", FIREFOX, None)
    assert len(row.token_digest) == 64


def test_a_hash_made_with_old_parameters_is_renewed_at_login(
    runtime: Runtime, mail_users: dict[str, str], clock: FakeClock
) -> None:
    stronger = Runtime.open(runtime.settings.replace(passwords={"time_cost": 2}))
    try:
        app = create_app(stronger, testing=True)
        set_clock(app, clock)
        with stronger.sessions() as session:
            before = session.scalars(
                sa.select(Account.password_hash).where(Account.email == ALICE)
            ).one()
        assert ",t=1," in before
        assert Browser(app.test_client()).login().status_code == 302
        with stronger.sessions() as session:
            after = session.scalars(
                sa.select(Account.password_hash).where(Account.email == ALICE)
            ).one()
        assert ",t=2," in after and stronger.hasher.verify(after, ALICE_PW)
    finally:
        stronger.close()


def test_the_code_form_is_rate_limited_per_client(
    runtime: Runtime, mail_users: dict[str, str], clock: FakeClock
) -> None:
    limited = Runtime.open(
        runtime.settings.replace(
            portal={"login_rate_limit": "3/minute"}, security={"lockout_threshold": 100}
        )
    )
    try:
        app = create_app(limited, testing=True)
        set_clock(app, clock)
        first = Browser(app.test_client(), ip="192.0.2.10")
        first.login()
        enable_2fa(first, clock)
        first.logout()
        attacker = Browser(app.test_client(), ip="192.0.2.11")
        assert attacker.login().headers["Location"] == "/login/code"
        for _ in range(3):
            assert attacker.code("000000").status_code == 200
        blocked = attacker.code("000000")
        assert blocked.status_code == 429 and "Too many attempts" in blocked.text
    finally:
        limited.close()
