"""Attacks on the portal's sign-in that the other login tests do not try.

Threats: a right password without the second factor reaching any page (JSON
endpoints, downloads, the account and admin pages) rather than only the code
page; an app password (meant for one mail program) opening the portal; the
parked first step replayed or outliving a disabled account; a TOTP code spent on
sign-in spent again on another form; spellings of one login name getting more
guesses than the name itself, or a look-alike getting in; `next=` written so a
browser leaves the site.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from flask import Flask, url_for
from werkzeug.routing import BuildError

from gateway import app_passwords, db
from gateway.admin import Actor
from gateway.admin import accounts as admin_accounts
from gateway.models import Account, AuditEvent, LoginLockout, PortalSession
from gateway.runtime import Runtime
from webportal import access, create_app
from webportal.clock import set_clock

from .account_support import ALICE, ALICE_PW, Browser, FakeClock, enable_2fa
from .conftest import csrf_from

THRESHOLD = 3


@pytest.fixture
def clock(app: Flask) -> FakeClock:
    fake = FakeClock()
    set_clock(app, fake)
    return fake


@pytest.fixture
def browser(app: Flask, clock: FakeClock) -> Browser:
    return Browser(app.test_client())


@pytest.fixture
def strict(runtime: Runtime, clock: FakeClock) -> Iterator[tuple[Runtime, Browser]]:
    """Lock after three failures; the per-client limit out of the way."""
    rt = Runtime.open(
        runtime.settings.replace(
            security={"lockout_threshold": THRESHOLD}, portal={"login_rate_limit": "1000/minute"}
        )
    )
    app = create_app(rt, testing=True)
    set_clock(app, clock)
    yield rt, Browser(app.test_client())
    rt.close()


def account_id(runtime: Runtime, email: str = ALICE) -> int:
    with runtime.sessions() as session:
        return session.scalars(sa.select(Account.id).where(Account.email == email)).one()


def make_admin(runtime: Runtime) -> None:
    with db.transaction(runtime.sessions) as session:
        session.scalars(sa.select(Account).where(Account.email == ALICE)).one().is_admin = True


def parked(browser: Browser, clock: FakeClock) -> str:
    """Alice with 2FA on, signed out, then her right password typed again: the secret."""
    assert browser.login().status_code == 302
    secret, _ = enable_2fa(browser, clock)
    browser.logout()
    clock.advance(seconds=60)
    assert browser.login().headers["Location"] == "/login/code"
    return secret


def every_url(app: Flask) -> list[tuple[str, str, frozenset[str]]]:
    """Each non-public route of the app as (URL, rule, methods), its ids filled with 1."""
    urls = []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            view = app.view_functions[rule.endpoint]
            if rule.endpoint in access.BUILTIN_PUBLIC_ENDPOINTS:
                continue
            if access.access_rule(view) == "public":
                continue
            values: dict[str, object] = {}
            for name in rule.arguments - set(rule.defaults or {}):
                converter = rule._converters[name]
                choices = getattr(converter, "items", None)  # `any(...)`: a fixed list
                values[name] = sorted(choices)[0] if choices else 1
            try:
                url = url_for(rule.endpoint, **values)
            except BuildError:
                url = url_for(rule.endpoint, **{name: "x" for name in values})
            urls.append((url, rule.rule, frozenset(rule.methods or ())))
    return urls


def test_a_password_without_its_code_reaches_no_page(
    app: Flask, runtime: Runtime, browser: Browser, clock: FakeClock, mail_users: dict[str, str]
) -> None:
    """Every route but the public ones, by GET and by POST with a valid CSRF token:
    none answers anything but the way to the sign-in page."""
    make_admin(runtime)
    parked(browser, clock)
    token = csrf_from(browser.get("/login/code").text)
    urls = every_url(app)
    assert len(urls) > 60
    headers = {"X-Requested-With": "XMLHttpRequest", "Accept": "application/json"}
    for url, rule, methods in urls:
        for method in sorted(methods & {"GET", "POST"}):
            response = browser.client.open(
                url,
                method=method,
                data={"csrf_token": token} if method == "POST" else None,
                headers=headers,
                environ_base=browser._env(),
            )
            assert response.status_code == 302, (method, rule, response.status_code)
            assert response.headers["Location"].startswith("/login"), (method, rule)
    # ...and the second step is still there for the real owner.
    assert browser.get("/login/code").status_code == 200


def test_an_app_password_does_not_open_the_portal(
    runtime: Runtime, browser: Browser, mail_users: dict[str, str], clock: FakeClock
) -> None:
    for two_factor in (False, True):
        with db.transaction(runtime.sessions) as session:
            account = session.scalars(sa.select(Account).where(Account.email == ALICE)).one()
            _row, app_password = app_passwords.create(
                session, account, f"phone {two_factor}", clock.now
            )
        for typed in (app_password, app_passwords.format_for_display(app_password)):
            refused = browser.login(ALICE, typed)
            assert refused.status_code == 200 and "Email or password is wrong." in refused.text
        # The address password is no portal password either.
        assert "Email or password is wrong." in browser.login(ALICE, mail_users[ALICE]).text
        if not two_factor:
            browser.login()
            enable_2fa(browser, clock)
            browser.logout()
    assert browser.get("/inbox").status_code == 302


def test_a_code_spent_on_sign_in_opens_no_other_form(
    browser: Browser, clock: FakeClock, mail_users: dict[str, str]
) -> None:
    secret = parked(browser, clock)
    code = clock.code(secret)
    assert browser.code(code).headers["Location"] == "/inbox"
    # Within the same 30 s, the code does not turn 2FA off (a stolen session plus a
    # shoulder-surfed code).
    refused = browser.post("/account/2fa/disable", {"password": ALICE_PW, "code": code})
    assert refused.status_code == 200 and "already used" in refused.text
    browser.logout()
    assert browser.login().headers["Location"] == "/login/code"


def test_a_parked_step_replayed_after_sign_in_fails(
    runtime: Runtime, browser: Browser, clock: FakeClock, mail_users: dict[str, str]
) -> None:
    secret = parked(browser, clock)
    with browser.client.session_transaction() as cookie:
        copied = dict(cookie)
    # The owner finishes; then the copied half-way cookie is sent with the same code.
    code = clock.code(secret)
    assert browser.code(code).headers["Location"] == "/inbox"
    thief = Browser(browser.client.application.test_client(), ip="198.51.100.66")
    with thief.client.session_transaction() as cookie:
        cookie.update(copied)
    assert "already used" in thief.code(code).text
    assert thief.get("/inbox").status_code == 302


def test_an_account_disabled_at_the_code_page_gets_no_session(
    runtime: Runtime, browser: Browser, clock: FakeClock, mail_users: dict[str, str]
) -> None:
    """Before the fix the right code made a live session row (and a successful "login"
    entry) for the disabled account: load_user refused it, but an admin's later
    re-enable would have brought it back."""
    secret = parked(browser, clock)
    with db.transaction(runtime.sessions) as session:
        admin_accounts.set_disabled(session, ALICE, True, actor=Actor("test"), now=clock.now)
    clock.advance(seconds=30)
    refused = browser.code(clock.code(secret))
    assert refused.status_code == 302 and refused.headers["Location"] == "/login"
    assert browser.get("/inbox").status_code == 302
    with runtime.sessions() as session:
        live = session.scalars(
            sa.select(PortalSession.id).where(PortalSession.ended_at.is_(None))
        ).all()
        last = session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == "login").order_by(AuditEvent.id.desc())
        ).first()
    assert live == []  # no session row was made for the disabled account
    assert last is not None and (last.success, last.detail) == (False, "account disabled")
    # Enabled again: that browser is still signed out.
    with db.transaction(runtime.sessions) as session:
        admin_accounts.set_disabled(session, ALICE, False, actor=Actor("test"), now=clock.now)
    assert browser.get("/inbox").status_code == 302


@pytest.mark.parametrize(
    "spelling",
    ["ALICE@EXAMPLE.TEST", " Alice@Example.Test ", "alice@example.test"],
)
def test_spellings_of_one_name_share_one_count(
    strict: tuple[Runtime, Browser], mail_users: dict[str, str], spelling: str
) -> None:
    runtime, browser = strict
    spellings = ["ALICE@EXAMPLE.TEST", " Alice@Example.Test ", "alice@example.test"]
    for typed in spellings:
        assert "Email or password is wrong." in browser.login(typed, "guess").text
    # Locked under every spelling, the right password included.
    assert "Too many failed sign-ins" in browser.login(spelling, ALICE_PW).text
    with runtime.sessions() as session:
        keys = session.scalars(sa.select(LoginLockout.key)).all()
    assert keys == [f"account:{account_id(runtime)}"]


@pytest.mark.parametrize(
    "look_alike",
    [
        "alice@example.test.",  # the root-anchored domain
        "alice+tag@example.test",  # plus-addressing: another login, not a variant
        "ａlice@example.test",  # full-width a (NFKC folds it to "a")
        "alice@ｅxample.test",
        "alıce@example.test",  # dotless i
        "alice@example.test\u200b",  # zero-width space
    ],
)
def test_look_alikes_neither_log_in_nor_lock_the_account(
    strict: tuple[Runtime, Browser], mail_users: dict[str, str], look_alike: str
) -> None:
    runtime, browser = strict
    for _ in range(THRESHOLD + 1):
        refused = browser.login(look_alike, ALICE_PW)
        assert refused.status_code == 200
    # The look-alike never counted against Alice: her right password still works.
    assert browser.login(ALICE, ALICE_PW).status_code == 302
    with runtime.sessions() as session:
        keys = session.scalars(sa.select(LoginLockout.key)).all()
    assert f"account:{account_id(runtime)}" not in keys


@pytest.mark.parametrize(
    "target",
    [
        "/%2F%2Fevil.example",
        "%2F%2Fevil.example",
        "/%5Cevil.example",
        "https%3A%2F%2Fevil.example",
        "/\u3000/evil.example",
        "/\u2028/evil.example",
        "/\x00/evil.example",
        "//%65vil.example",
        "/./\\evil.example",
        "JavaScript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "/..//evil.example",
        "///evil.example",
    ],
)
def test_no_next_leaves_the_site(browser: Browser, mail_users: dict[str, str], target: str) -> None:
    page = browser.client.get("/login", query_string={"next": target})
    if "\x00" in target:
        assert page.status_code == 400  # a NUL anywhere in a request is refused outright
        return
    response = browser.client.post(
        "/login",
        query_string={"next": target},
        data={"email": ALICE, "password": ALICE_PW, "csrf_token": csrf_from(page.text)},
    )
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith("/") and not location.startswith(("//", "/\\")), location
    assert ":" not in location.split("?", 1)[0] or location == "/inbox", location
    assert not any(c in location for c in "\\\t\r\n\x00"), location
