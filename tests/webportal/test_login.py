"""Portal login and logout: one answer for every failure, every attempt audited,
CSRF on every form, per-client rate limits, and no open redirect after login."""

from __future__ import annotations

import re
import secrets

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from gateway.models import AuditEvent
from gateway.runtime import Runtime
from webportal import create_app
from webportal.auth import UNKNOWN_ACTOR, safe_next

from .conftest import LoginFn, csrf_from

ALICE = "alice@example.test"
ALICE_PW = "portal-alice-smtp-pw"
REDIS_URL = "redis://127.0.0.1:6379/0"


def login_events(runtime: Runtime) -> list[AuditEvent]:
    with runtime.sessions() as session:
        return list(
            session.scalars(
                sa.select(AuditEvent).where(AuditEvent.action == "login").order_by(AuditEvent.id)
            )
        )


def normalized(html: str, typed_email: str) -> str:
    """The page without what legitimately differs: the CSRF token and the echoed email."""
    html = re.sub(r'name="csrf_token" value="[^"]+"', 'name="csrf_token" value=""', html)
    return html.replace(f'value="{typed_email}"', 'value=""')


def test_right_password_logs_in_and_is_audited(
    client: FlaskClient, runtime: Runtime, mail_users: dict[str, str], login: LoginFn
) -> None:
    response = login(ALICE, ALICE_PW, next_url=None)
    assert response.status_code == 302
    assert response.headers["Location"] == "/inbox"
    inbox = client.get("/inbox")
    assert inbox.status_code == 200
    assert f"Signed in as {ALICE}" in inbox.text

    [event] = login_events(runtime)
    assert event.success is True
    assert event.actor == ALICE
    assert event.account_id is not None
    assert event.ip == "127.0.0.1"
    assert event.user_agent.startswith("Werkzeug/")
    assert "portal-alice" not in (event.detail + event.actor + event.target)


def test_unknown_account_and_wrong_password_get_the_same_answer(
    client: FlaskClient, runtime: Runtime, mail_users: dict[str, str], login: LoginFn
) -> None:
    verified: list[str | None] = []
    real_verify = runtime.hasher.verify

    def spy(stored_hash: str | None, password: str) -> bool:
        verified.append(stored_hash)
        return real_verify(stored_hash, password)

    runtime.hasher.verify = spy  # type: ignore[method-assign]
    wrong = login(ALICE, "not-the-password")
    unknown = login("nobody@example.test", "not-the-password")

    assert wrong.status_code == unknown.status_code == 200
    assert "Email or password is wrong." in wrong.text
    assert normalized(wrong.text, ALICE) == normalized(unknown.text, "nobody@example.test")
    # The unknown account still paid for an Argon2 verify (against the dummy hash).
    assert len(verified) == 2 and verified[0] is not None and verified[1] is None
    assert client.get("/inbox").status_code == 302


def test_failed_attempts_are_audited_without_secrets(
    client: FlaskClient, runtime: Runtime, mail_users: dict[str, str], login: LoginFn
) -> None:
    login(ALICE, "wrong-password-1")
    login("Nobody@Example.test", "wrong-password-2")
    login("s3cret-typed-in-the-wrong-field", "wrong-password-3")

    wrong, unknown, garbage = login_events(runtime)
    assert (wrong.success, wrong.actor, wrong.target) == (False, ALICE, ALICE)
    assert wrong.account_id is not None
    assert (unknown.success, unknown.actor, unknown.account_id) == (
        False,
        "nobody@example.test",
        None,
    )
    # A login that is not an address may be a password typed in the wrong field.
    assert (garbage.success, garbage.actor, garbage.target) == (False, UNKNOWN_ACTOR, "")
    stored = " ".join(f"{e.actor} {e.target} {e.detail}" for e in login_events(runtime))
    assert "wrong-password" not in stored and "s3cret" not in stored


def test_overlong_password_is_an_ordinary_failure(
    client: FlaskClient, runtime: Runtime, mail_users: dict[str, str], login: LoginFn
) -> None:
    response = login(ALICE, "x" * 1025)
    assert response.status_code == 200
    assert "Email or password is wrong." in response.text
    [event] = login_events(runtime)
    assert event.success is False and event.account_id is not None


def test_overlong_email_is_an_ordinary_failure(
    client: FlaskClient, runtime: Runtime, mail_users: dict[str, str], login: LoginFn
) -> None:
    response = login("a" * 5000 + "@example.test", ALICE_PW)
    assert response.status_code == 200
    assert "Email or password is wrong." in response.text
    assert ("a" * 400) not in response.text


def test_control_characters_are_an_ordinary_failure(
    client: FlaskClient, runtime: Runtime, mail_users: dict[str, str], login: LoginFn
) -> None:
    response = login("\x1b[31m@example.test", ALICE_PW)
    assert response.status_code == 200
    assert "Email or password is wrong." in response.text
    [event] = login_events(runtime)
    assert (event.success, event.actor, event.account_id) == (False, UNKNOWN_ACTOR, None)


@pytest.mark.parametrize("email", ["alice@example.test\x00", "ali\x00ce@example.test"])
def test_a_nul_is_a_bad_request_and_checks_no_password(
    client: FlaskClient, runtime: Runtime, mail_users: dict[str, str], login: LoginFn, email: str
) -> None:
    """No form field holds a NUL (webportal.typed_text): no account can be named
    with one, so nothing is checked and nobody is logged in."""
    response = login(email, ALICE_PW)
    assert response.status_code == 400
    assert login_events(runtime) == []
    assert client.get("/inbox").status_code == 302


def test_user_agent_is_stored_printable(
    client: FlaskClient, runtime: Runtime, mail_users: dict[str, str]
) -> None:
    token = csrf_from(client.get("/login").text)
    client.post(
        "/login",
        data={"email": ALICE, "password": ALICE_PW, "csrf_token": token},
        headers={"User-Agent": "Mozilla/5.0\x00\x07 (evil)"},
    )
    [event] = login_events(runtime)
    assert event.success and event.user_agent == "Mozilla/5.0?? (evil)"


def test_missing_csrf_token_gets_the_friendly_400_page(
    client: FlaskClient, runtime: Runtime, mail_users: dict[str, str]
) -> None:
    client.get("/login")
    response = client.post("/login", data={"email": ALICE, "password": ALICE_PW})
    assert response.status_code == 400
    assert "Form expired" in response.text
    assert "Traceback" not in response.text and "CSRF" not in response.text
    assert login_events(runtime) == []  # refused before the password was looked at
    assert client.get("/inbox").status_code == 302


def test_wrong_csrf_token_is_refused(client: FlaskClient, mail_users: dict[str, str]) -> None:
    client.get("/login")
    response = client.post(
        "/login", data={"email": ALICE, "password": ALICE_PW, "csrf_token": "forged"}
    )
    assert response.status_code == 400
    assert client.get("/inbox").status_code == 302


def test_cross_site_post_is_refused_even_with_a_token(
    client: FlaskClient, mail_users: dict[str, str]
) -> None:
    token = csrf_from(client.get("/login").text)
    response = client.post(
        "/login",
        data={"email": ALICE, "password": ALICE_PW, "csrf_token": token},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert response.status_code == 400
    same_origin = client.post(
        "/login",
        data={"email": ALICE, "password": ALICE_PW, "csrf_token": token},
        headers={"Sec-Fetch-Site": "same-origin"},
    )
    assert same_origin.status_code == 302


def test_logout_is_post_only_and_needs_the_token(
    client: FlaskClient, runtime: Runtime, mail_users: dict[str, str], login: LoginFn
) -> None:
    login(ALICE, ALICE_PW)
    assert client.get("/logout").status_code == 405
    assert client.post("/logout").status_code == 400
    assert client.get("/inbox").status_code == 200  # still logged in

    token = csrf_from(client.get("/inbox").text)
    response = client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert "You have been signed out." in client.get("/login").text
    assert client.get("/inbox").status_code == 302
    with runtime.sessions() as session:
        logout = session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "logout")).one()
    assert (logout.actor, logout.success, logout.ip) == (ALICE, True, "127.0.0.1")


def test_login_starts_a_fresh_session_with_its_own_nonce(
    client: FlaskClient, mail_users: dict[str, str], login: LoginFn
) -> None:
    with client.session_transaction() as session:
        session["planted"] = "by an attacker"
    login(ALICE, ALICE_PW)
    with client.session_transaction() as session:
        assert "planted" not in session
        first = session["_user_id"]
    token = csrf_from(client.get("/inbox").text)
    client.post("/logout", data={"csrf_token": token})
    login(ALICE, ALICE_PW)
    with client.session_transaction() as session:
        second = session["_user_id"]
    account_id, _, nonce = first.partition(":")
    assert account_id.isdigit() and len(nonce) >= 32
    assert second.partition(":")[0] == account_id and second != first


def test_a_session_for_a_deleted_account_is_logged_out(
    client: FlaskClient, mail_users: dict[str, str], login: LoginFn
) -> None:
    login(ALICE, ALICE_PW)
    with client.session_transaction() as session:
        session["_user_id"] = "999999:" + secrets.token_urlsafe(24)
    assert client.get("/inbox").status_code == 302


def test_logged_out_visit_comes_back_after_login(
    client: FlaskClient, mail_users: dict[str, str], login: LoginFn
) -> None:
    response = client.get("/inbox?page=2")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/inbox?page%3D2"
    after = login(ALICE, ALICE_PW, next_url="/inbox?page=2")
    assert after.headers["Location"] == "/inbox?page=2"


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
        "\\\\evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "https:evil.example",
        "javascript:alert(1)",
        "evil.example",
        " /inbox",
        "",
    ],
)
def test_next_url_cannot_leave_the_site(
    client: FlaskClient, mail_users: dict[str, str], login: LoginFn, target: str
) -> None:
    assert safe_next(target) is None
    response = login(ALICE, ALICE_PW, next_url=target)
    assert response.status_code == 302
    assert response.headers["Location"] == "/inbox"


def test_next_url_keeps_paths_on_this_host() -> None:
    assert safe_next("/inbox?page=3") == "/inbox?page=3"
    assert safe_next("/") == "/"


def test_login_form_is_rate_limited_per_client(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    limited = Runtime.open(runtime.settings.replace(portal={"login_rate_limit": "3/minute"}))
    try:
        app = create_app(limited, testing=True)
        _assert_rate_limited(app, limited_ip="198.51.100.7", other_ip="198.51.100.8")
    finally:
        limited.close()


def test_addresses_of_one_ipv6_64_are_one_client_for_the_login_limit(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    """Every IPv6 host holds a /64: counted per address, it had 2^64 times the limit."""
    limited = Runtime.open(runtime.settings.replace(portal={"login_rate_limit": "3/minute"}))
    try:
        app = create_app(limited, testing=True)
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = "2001:db8:5:9::1"
        token = csrf_from(client.get("/login").text)
        form = {"email": ALICE, "password": "wrong", "csrf_token": token}
        for n in range(2, 5):
            client.environ_base["REMOTE_ADDR"] = f"2001:db8:5:9::{n}"
            assert client.post("/login", data=form).status_code == 200
        client.environ_base["REMOTE_ADDR"] = "2001:db8:5:9:abcd::77"
        assert client.post("/login", data={**form, "password": ALICE_PW}).status_code == 429
        _assert_rate_limited(app, limited_ip="2001:db8:5:a::1", other_ip="2001:db8:5:b::1")
    finally:
        limited.close()


def test_rate_limit_counters_can_live_in_redis(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    limited = Runtime.open(
        runtime.settings.replace(
            portal={"login_rate_limit": "3/minute", "ratelimit_storage": REDIS_URL}
        )
    )
    try:
        app = create_app(limited, testing=True)
        # Addresses unique to this run, so counters left in Redis by other runs do not count.
        net = f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}"
        _assert_rate_limited(app, limited_ip=f"{net}.1", other_ip=f"{net}.2")
    finally:
        limited.close()


def _assert_rate_limited(app: Flask, *, limited_ip: str, other_ip: str) -> None:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = limited_ip
    token = csrf_from(client.get("/login").text)
    form = {"email": ALICE, "password": "wrong", "csrf_token": token}
    for _ in range(3):
        assert client.post("/login", data=form).status_code == 200
    blocked = client.post("/login", data={**form, "password": ALICE_PW})
    assert blocked.status_code == 429
    assert "Too many attempts" in blocked.text
    assert int(blocked.headers["Retry-After"]) > 0
    assert blocked.headers["Cache-Control"] == "no-store"
    # Showing the form is not an attempt; another client is not affected.
    assert client.get("/login").status_code == 200
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = other_ip
    other_token = csrf_from(other.get("/login").text)
    ok = other.post(
        "/login", data={"email": ALICE, "password": ALICE_PW, "csrf_token": other_token}
    )
    assert ok.status_code == 302
