"""Security headers on every answer, cookie flags, and friendly error pages that
never show a traceback. Threats: clickjacking, script injection, leaked referrers,
cached mail, session theft over plain http, internals shown to a visitor."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa
from flask import Flask, Response
from flask.testing import FlaskClient

from gateway import audit
from gateway.models import AuditEvent
from gateway.runtime import Runtime
from webportal import access, create_app
from webportal.extensions import db_session
from webportal.security import CONTENT_SECURITY_POLICY

from .conftest import LoginFn

EXPECTED_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
)


def assert_security_headers(headers: dict[str, str] | object, *, tls: bool = True) -> None:
    get = headers.get  # type: ignore[attr-defined]
    assert get("Content-Security-Policy") == EXPECTED_CSP
    assert get("X-Content-Type-Options") == "nosniff"
    assert get("Referrer-Policy") == "no-referrer"
    assert get("X-Frame-Options") == "DENY"
    if tls:
        assert get("Strict-Transport-Security") == "max-age=31536000"
    else:
        assert get("Strict-Transport-Security") is None


def test_csp_is_the_documented_policy() -> None:
    assert CONTENT_SECURITY_POLICY == EXPECTED_CSP


@pytest.mark.parametrize("path", ["/login", "/inbox", "/", "/no-such-page", "/static/portal.css"])
def test_every_answer_carries_the_security_headers(client: FlaskClient, path: str) -> None:
    with client.get(path) as response:
        assert_security_headers(response.headers)
        if path.startswith("/static/"):
            assert response.status_code == 200
            assert response.headers.get("Cache-Control") != "no-store"
        else:
            assert response.headers["Cache-Control"] == "no-store"


@access.public
def _public_document() -> Response:
    response = Response("a public key")
    response.cache_control.public = True
    response.cache_control.max_age = 3600
    return response


def test_only_a_response_marked_public_may_be_cached(app: Flask) -> None:
    app.add_url_rule("/public-doc", "public_doc", _public_document)
    response = app.test_client().get("/public-doc")
    assert response.headers["Cache-Control"] in ("public, max-age=3600", "max-age=3600, public")
    assert_security_headers(response.headers)


def test_pages_use_no_inline_script_or_style(
    client: FlaskClient, mail_users: dict[str, str], login: LoginFn
) -> None:
    login("alice@example.test", "portal-alice-smtp-pw")
    for path in ("/login", "/inbox", "/no-such-page"):
        html = client.get(path).text
        assert "<script" not in html and "<style" not in html
        assert not re.search(r"\sstyle=|\son[a-z]+=", html)


def test_session_cookie_flags_over_tls(
    client: FlaskClient, runtime: Runtime, mail_users: dict[str, str], login: LoginFn
) -> None:
    response = login("alice@example.test", "portal-alice-smtp-pw")
    cookies = response.headers.getlist("Set-Cookie")
    [cookie] = [c for c in cookies if c.startswith("__Host-sealgate=")]
    # The device cookie (webportal.devices): as locked down, longer lived, Strict.
    [device] = [c for c in cookies if c.startswith("__Host-sealgate_device=")]
    assert "; Secure" in device and "; HttpOnly" in device and "; SameSite=Strict" in device
    assert "; Path=/" in device and "Domain=" not in device
    assert f"Max-Age={runtime.settings.security.known_client_days * 86400}" in device
    assert "; Secure" in cookie and "; HttpOnly" in cookie and "; SameSite=Lax" in cookie
    assert "; Path=/" in cookie and "Domain=" not in cookie
    expires = re.search(r"Expires=([^;]+)", cookie)
    assert expires is not None
    lifetime = dt.datetime.strptime(expires.group(1), "%a, %d %b %Y %H:%M:%S GMT").replace(
        tzinfo=dt.UTC
    ) - dt.datetime.now(dt.UTC)
    minutes = runtime.settings.portal.session_minutes
    assert dt.timedelta(minutes=minutes - 5) < lifetime <= dt.timedelta(minutes=minutes)


def test_plain_http_portal_has_no_secure_flag_and_no_hsts(runtime: Runtime) -> None:
    plain = Runtime.open(
        runtime.settings.replace(portal={"tls": False, "base_url": "http://localhost:8080"})
    )
    try:
        client = create_app(plain, testing=True).test_client()
        response = client.get("/login")
        assert_security_headers(response.headers, tls=False)
        cookie = response.headers["Set-Cookie"]
        assert cookie.startswith("sealgate=") and "Secure" not in cookie
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    finally:
        plain.close()


def test_tls_proxy_in_front_counts_as_tls(runtime: Runtime) -> None:
    proxied = Runtime.open(
        runtime.settings.replace(portal={"tls": False, "base_url": "https://mail.example.test"})
    )
    try:
        response = create_app(proxied, testing=True).test_client().get("/login")
        assert "Secure" in response.headers["Set-Cookie"]
        assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
    finally:
        proxied.close()


def test_not_found_page(client: FlaskClient) -> None:
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert "Page not found" in response.text and "<!doctype html>" in response.text


def test_method_not_allowed_page(client: FlaskClient) -> None:
    response = client.delete("/login")
    assert response.status_code == 405
    assert "Method not allowed" in response.text
    assert "GET" in response.headers["Allow"] and "POST" in response.headers["Allow"]


def test_request_too_large_page(client: FlaskClient, runtime: Runtime) -> None:
    too_big = b"x" * (runtime.settings.smtp.max_message_size + 1)
    response = client.post("/login", data=too_big, content_type="application/octet-stream")
    assert response.status_code == 413
    assert "Request too large" in response.text


def test_forbidden_page_keeps_the_account_menu(
    app: Flask, client: FlaskClient, mail_users: dict[str, str], login: LoginFn
) -> None:
    app.add_url_rule("/undeclared", "undeclared", lambda: "x")
    login("alice@example.test", "portal-alice-smtp-pw")
    response = client.get("/undeclared")
    assert response.status_code == 403
    assert "Access denied" in response.text and "Sign out" in response.text


@access.public
def _writes_then_fails() -> str:
    audit.record(db_session(), "test.partial", actor="test")
    raise RuntimeError("secret internals: password=hunter2")


@access.public
def _writes_then_answers() -> str:
    audit.record(db_session(), "test.whole", actor="test")
    return "done"


def test_unexpected_error_page_shows_no_internals_and_rolls_back(
    app: Flask, runtime: Runtime
) -> None:
    app.config["PROPAGATE_EXCEPTIONS"] = False  # as in production
    app.add_url_rule("/boom", "boom", _writes_then_fails)
    app.add_url_rule("/fine", "fine", _writes_then_answers)
    client = app.test_client()

    response = client.get("/boom")
    assert response.status_code == 500
    assert "Something went wrong" in response.text
    for leak in ("Traceback", "RuntimeError", "hunter2", "secret internals"):
        assert leak not in response.text
    assert_security_headers(response.headers)

    assert client.get("/fine").text == "done"
    with runtime.sessions() as session:
        actions = set(session.scalars(sa.select(AuditEvent.action)))
    assert "test.whole" in actions  # a returned response commits
    assert "test.partial" not in actions  # an exception rolls back


@pytest.mark.parametrize(("language", "title"), [("de", "Anmelden"), ("fr", "Se connecter")])
def test_login_page_follows_the_browser_language(
    client: FlaskClient, language: str, title: str
) -> None:
    html = client.get("/login", headers={"Accept-Language": f"{language}-CH, en;q=0.5"}).text
    assert f'<html lang="{language}">' in html and f"<h1>{title}</h1>" in html


def test_logged_in_pages_follow_the_accounts_language(
    client: FlaskClient, runtime: Runtime, login: LoginFn
) -> None:
    from gateway import accounts, db

    with db.transaction(runtime.sessions) as session:
        accounts.add_account(
            session, runtime.hasher, "claire@example.test", "pw-claire", actor="t", language="fr"
        )
    login("claire@example.test", "pw-claire")
    html = client.get("/inbox", headers={"Accept-Language": "de"}).text
    assert "<h1>Boîte de réception</h1>" in html and "Aucun message." in html
