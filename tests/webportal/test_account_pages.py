"""The security pages: fresh-login rule, 2FA off, app passwords, password changes,
the activity page, and every page in German and French.

Threats: a session left open (or a stolen cookie) used to switch off 2FA, add
an app password or change a password; secrets shown twice; a page that shows
what a user typed without escaping it.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from flask import Flask

from gateway import app_passwords, audit, db
from gateway.models import Account, Address, AppPassword, AuditEvent
from gateway.runtime import Runtime
from webportal import access
from webportal.clock import set_clock

from .account_support import (
    ALICE,
    ALICE_PW,
    Browser,
    FakeClock,
    app_password_from,
    codes_from,
    enable_2fa,
    text_of,
)

SENSITIVE_PAGES = ["/account/2fa/enable", "/account/password", "/account/address-password"]


@pytest.fixture
def clock(app: Flask) -> FakeClock:
    fake = FakeClock()
    set_clock(app, fake)
    return fake


@pytest.fixture
def alice(app: Flask, clock: FakeClock, mail_users: dict[str, str]) -> Browser:
    browser = Browser(app.test_client())
    assert browser.login().status_code == 302
    return browser


def test_sensitive_views_declare_the_fresh_login_rule(app: Flask) -> None:
    rules = {name: access.access_rule(view) for name, view in app.view_functions.items()}
    fresh = {name for name, rule in rules.items() if rule == "fresh_login_required"}
    assert fresh == {
        "account.alerts",
        "account.secret_key",
        "account.enable_2fa",
        "account.disable_2fa",
        "account.new_recovery_codes",
        "account.create_app_password",
        "account.revoke_app_password",
        "account.revoke_all_app_passwords",
        "account.change_password",
        "account.address_password",
        # Issue 5: a new secure-page password re-seals what only the password opens.
        "secure.new_password",
    }
    for name in ("account.security", "account.activity_page", "account.sessions_page"):
        assert rules[name] == "login_required"
    assert rules["auth.second_factor"] == "public"


@pytest.mark.parametrize("path", SENSITIVE_PAGES)
def test_a_stale_login_must_confirm_the_password_first(
    alice: Browser, clock: FakeClock, runtime: Runtime, path: str
) -> None:
    assert alice.get(path).status_code == 200  # just logged in: fresh
    clock.advance(minutes=11)
    stale = alice.get(path)
    assert stale.status_code == 302
    assert stale.headers["Location"] == f"/account/confirm?next={path}"
    wrong = alice.post(f"/account/confirm?next={path}", {"password": "nope"})
    assert wrong.status_code == 200 and "The password is wrong." in wrong.text
    right = alice.post(f"/account/confirm?next={path}", {"password": ALICE_PW})
    assert right.status_code == 302 and right.headers["Location"] == path
    assert alice.get(path).status_code == 200
    with runtime.sessions() as session:
        confirms = session.scalars(
            sa.select(AuditEvent.success).where(AuditEvent.action == "reauth")
        ).all()
    assert confirms == [False, True]


def test_a_stale_form_post_is_not_carried_out(
    alice: Browser, clock: FakeClock, runtime: Runtime
) -> None:
    token_page = alice.get("/account/app-passwords")
    assert token_page.status_code == 200
    clock.advance(minutes=11)
    response = alice.post("/account/app-passwords", {"name": "late"})
    assert response.status_code == 302
    assert response.headers["Location"] == "/account/confirm?next=/account/app-passwords"
    with runtime.sessions() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(AppPassword)) == 0


def test_confirm_refuses_an_offsite_next(alice: Browser, clock: FakeClock) -> None:
    response = alice.post("/account/confirm?next=//evil.example/", {"password": ALICE_PW})
    assert response.headers["Location"] == "/account/security"


def test_enable_page_shows_a_local_qr_code_and_the_secret(alice: Browser) -> None:
    page = alice.get("/account/2fa/enable")
    assert 'src="data:image/svg+xml' in page.text
    assert "<script" not in page.text and "https://" not in page.text.split("<main>")[1]
    assert page.headers["Cache-Control"] == "no-store"
    # A reload keeps the secret the app may already have scanned.
    again = alice.get("/account/2fa/enable")
    assert text_of(page.text).split("Enter this key")[0] in text_of(again.text)


def test_wrong_enrolment_code_leaves_2fa_off(alice: Browser, runtime: Runtime) -> None:
    alice.get("/account/2fa/enable")
    response = alice.post("/account/2fa/enable", {"code": "123456"})
    assert response.status_code == 200
    assert "The code is wrong or was already used." in response.text
    assert "Off." in alice.get("/account/security").text


def test_turning_2fa_off_needs_password_and_code(
    alice: Browser, clock: FakeClock, runtime: Runtime
) -> None:
    secret, codes = enable_2fa(alice, clock)
    security = text_of(alice.get("/account/security").text)
    assert "On since" in security and "Recovery codes left: 10" in security
    clock.advance(seconds=60)
    no_password = alice.post("/account/2fa/disable", {"password": "x", "code": clock.code(secret)})
    assert "The password is wrong." in no_password.text
    no_code = alice.post("/account/2fa/disable", {"password": ALICE_PW, "code": "000000"})
    assert "The code is wrong or was already used." in no_code.text
    assert "On since" in alice.get("/account/security").text
    done = alice.post("/account/2fa/disable", {"password": ALICE_PW, "code": codes[5]})
    assert done.status_code == 302
    assert "Off." in alice.get("/account/security").text


def test_new_recovery_codes_replace_the_old(alice: Browser, clock: FakeClock) -> None:
    _, old = enable_2fa(alice, clock)
    response = alice.post("/account/2fa/recovery-codes", page="/account/security")
    new = codes_from(response.text)
    assert len(new) == 10 and set(new).isdisjoint(old)


def test_app_passwords_created_shown_once_listed_and_revoked(
    alice: Browser, clock: FakeClock, runtime: Runtime
) -> None:
    created = alice.post("/account/app-passwords", {"name": "Thunderbird <laptop>"})
    assert created.status_code == 200
    password = app_password_from(created.text)
    assert "Thunderbird &lt;laptop&gt;" in created.text
    listing = alice.get("/account/app-passwords")
    assert password not in listing.text and "Thunderbird &lt;laptop&gt;" in listing.text
    assert "never" in text_of(listing.text)

    with db.transaction(runtime.sessions) as session:
        account = session.scalars(sa.select(Account).where(Account.email == ALICE)).one()
        assert app_passwords.verify(session, account.id, password, clock.now, ip="192.0.2.8")
        [row] = session.scalars(sa.select(AppPassword)).all()
        row_id = row.id
    assert "192.0.2.8" in alice.get("/account/app-passwords").text

    alice.post("/account/app-passwords", {"name": "phone"})
    revoked = alice.post(f"/account/app-passwords/{row_id}/revoke", page="/account/app-passwords")
    assert revoked.status_code == 302
    after = text_of(alice.get("/account/app-passwords").text)
    assert "The app password was revoked." in after and "Thunderbird" not in after
    alice.post("/account/app-passwords/revoke-all", page="/account/app-passwords")
    assert "No app passwords yet." in alice.get("/account/app-passwords").text


@pytest.mark.parametrize("name", ["", "x" * 65, "bell\x07"])
def test_bad_app_password_names_are_refused(alice: Browser, name: str) -> None:
    response = alice.post("/account/app-passwords", {"name": name})
    assert response.status_code == 400
    assert "Give the app password a name of at most 64 characters" in response.text


def test_changing_the_account_password_offers_the_compromise_steps(
    app: Flask, alice: Browser, clock: FakeClock, runtime: Runtime
) -> None:
    other = Browser(app.test_client(), ip="192.0.2.200")
    other.login()
    alice.post("/account/app-passwords", {"name": "phone"})

    for data, error in [
        ({"current": "wrong", "new": "a-new-password", "repeat": "a-new-password"}, "wrong"),
        ({"current": ALICE_PW, "new": "short", "repeat": "short"}, "at least 10 characters"),
        ({"current": ALICE_PW, "new": "a-new-password", "repeat": "another-one"}, "not the same"),
    ]:
        response = alice.post("/account/password", data)
        assert response.status_code == 200 and error in response.text

    changed = alice.post(
        "/account/password",
        {"current": ALICE_PW, "new": "a-new-password", "repeat": "a-new-password"},
    )
    # Post/Redirect/Get: Back to the steps never sends the change form again.
    assert changed.status_code == 303
    assert changed.headers["Location"] == "/account/password/changed"
    steps = text_of(alice.get("/account/password/changed").text)
    assert "Your account password was changed." in steps
    assert "Other sessions now: 1." in steps and "App passwords now: 1." in steps

    ended = alice.post(
        "/account/sessions/end-others",
        {"back": "/account/security"},
        page="/account/security",
    )
    assert ended.headers["Location"] == "/account/security"
    assert other.get("/inbox").status_code == 302
    alice.post("/account/app-passwords/revoke-all", page="/account/security")
    with runtime.sessions() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(AppPassword)) == 0

    # After the steps, the page counts what is left, for as long as it is shown.
    again = text_of(alice.get("/account/password/changed").text)
    assert "Other sessions now: 0." in again and "App passwords now: 0." in again
    clock.advance(minutes=61)
    later = alice.get("/account/password/changed")
    assert later.status_code == 302 and later.headers["Location"] == "/account/security"

    alice.logout()
    assert "Email or password is wrong." in alice.login(ALICE, ALICE_PW).text
    assert alice.login(ALICE, "a-new-password").status_code == 302
    # Only a browser that changed the password is shown that it was changed.
    unchanged = alice.get("/account/password/changed")
    assert unchanged.status_code == 302 and unchanged.headers["Location"] == "/account/security"


def test_changing_an_address_password_needs_the_account_password(
    alice: Browser, runtime: Runtime
) -> None:
    page = alice.get("/account/address-password")
    assert '<option value="alice@example.test" selected>' in page.text
    wrong = alice.post(
        "/account/address-password",
        {
            "address": ALICE,
            "current": "x",
            "new": "new-smtp-password",
            "repeat": "new-smtp-password",
        },
    )
    assert "The password is wrong." in wrong.text
    not_mine = alice.post(
        "/account/address-password",
        {
            "address": "bob@example.test",
            "current": ALICE_PW,
            "new": "new-smtp-password",
            "repeat": "new-smtp-password",
        },
    )
    assert "Choose one of your addresses." in not_mine.text
    done = alice.post(
        "/account/address-password",
        {
            "address": ALICE,
            "current": ALICE_PW,
            "new": "new-smtp-password",
            "repeat": "new-smtp-password",
        },
    )
    assert done.status_code == 302
    with runtime.sessions() as session:
        rows = {a.address: a.password_hash for a in session.scalars(sa.select(Address))}
    assert runtime.hasher.verify(rows[ALICE], "new-smtp-password")
    assert runtime.hasher.verify(rows["bob@example.test"], "bob-smtp-pw")


def test_activity_page_lists_logins_changes_and_app_password_use(
    app: Flask, alice: Browser, clock: FakeClock, runtime: Runtime
) -> None:
    Browser(app.test_client(), ip="203.0.113.9").login(ALICE, "wrong")
    enable_2fa(alice, clock)
    with db.transaction(runtime.sessions) as session:
        account = session.scalars(sa.select(Account).where(Account.email == ALICE)).one()
        audit.record(
            session,
            "smtp.auth",
            actor=ALICE,
            target=ALICE,
            account_id=account.id,
            ip="192.0.2.50",
            detail="app password '<Thunderbird>'",
        )
        audit.record(
            session,
            "imap.auth",
            actor=ALICE,
            target=ALICE,
            account_id=account.id,
            success=False,
            ip="192.0.2.51",
            detail="account locked",
        )
    page = alice.get("/account/activity")
    assert page.status_code == 200
    shown = text_of(page.text)
    assert "Two-factor login turned on" in shown
    assert "Sign-in failed: wrong password" in shown and "203.0.113.9" in shown
    assert "Mail program sign-in with the app password “<Thunderbird>” (SMTP)" in shown
    # One lockout for every protocol: each mail-program entry says which one it was.
    assert "Sign-in refused: too many failed attempts (IMAP)" in shown
    assert "&lt;Thunderbird&gt;" in page.text and "<Thunderbird>" not in page.text
    assert "Firefox on Linux" in shown


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("de", {"/account/security": "Zwei-Faktor-Anmeldung", "/account/sessions": "Sitzungen"}),
        ("fr", {"/account/security": "Connexion à deux facteurs", "/account/sessions": "Sessions"}),
    ],
)
def test_pages_speak_the_accounts_language(
    app: Flask,
    clock: FakeClock,
    runtime: Runtime,
    mail_users: dict[str, str],
    language: str,
    expected: dict[str, str],
) -> None:
    with db.transaction(runtime.sessions) as session:
        session.execute(sa.update(Account).values(language=language))
    browser = Browser(app.test_client())
    browser.login()
    for path in [
        "/account/security",
        "/account/app-passwords",
        "/account/activity",
        "/account/sessions",
        "/account/2fa/enable",
        "/account/password",
        "/account/address-password",
    ]:
        page = browser.get(path)
        assert page.status_code == 200, path
        assert f'<html lang="{language}">' in page.text
        if path in expected:
            assert expected[path] in text_of(page.text)


@pytest.mark.parametrize(
    "path",
    [
        "/account/sessions/99999999999999999999/end",
        "/account/app-passwords/99999999999999999999/revoke",
        "/account/sessions/-1/end",
        "/account/app-passwords/x/revoke",
    ],
)
def test_odd_ids_are_a_plain_404(alice: Browser, path: str) -> None:
    response = alice.post(path, page="/account/security")
    assert response.status_code == 404 and "Page not found" in response.text


def test_confirming_without_a_set_up_starts_over(
    alice: Browser, runtime: Runtime, clock: FakeClock
) -> None:
    response = alice.post("/account/2fa/enable", {"code": "123456"}, page="/account/security")
    assert response.status_code == 302 and response.headers["Location"] == "/account/2fa/enable"
    assert "totp-secret" in alice.get("/account/2fa/enable").text
