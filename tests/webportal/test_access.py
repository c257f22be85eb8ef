"""Every view declares an access rule; an undeclared one stops the app or gets 403.

Threat: a new page added without a login check silently publishes mail.
"""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gateway.runtime import Runtime
from webportal import access, create_app

from .admin_support import admin_login, make_admin
from .conftest import LoginFn, csrf_from


def test_every_endpoint_of_the_portal_declares_a_rule(app: Flask) -> None:
    undeclared = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        if rule.endpoint in access.BUILTIN_PUBLIC_ENDPOINTS:
            continue
        if access.access_rule(view) not in access.RULES:
            undeclared.append(rule.endpoint)
    assert undeclared == []
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert {"auth.login", "auth.logout", "mail.inbox", "static"} <= endpoints


def test_known_views_have_the_expected_rules(app: Flask) -> None:
    rules = {name: access.access_rule(view) for name, view in app.view_functions.items()}
    assert rules["auth.login"] == "public"
    assert rules["auth.logout"] == "login_required"
    assert rules["mail.inbox"] == "login_required"


def test_an_app_with_an_undeclared_view_refuses_to_start() -> None:
    app = Flask(__name__)

    @app.get("/forgotten")
    def forgotten() -> str:
        return "mail for everyone"

    with pytest.raises(access.MissingAccessRule, match="forgotten"):
        access.init_app(app)


def test_a_view_added_later_without_a_rule_is_refused(app: Flask) -> None:
    def late() -> str:
        return "should not be seen"

    app.add_url_rule("/late", "late", late)
    response = app.test_client().get("/late")
    assert response.status_code == 403
    assert "should not be seen" not in response.text
    assert "Access denied" in response.text


def test_two_rules_on_one_view_are_refused() -> None:
    with pytest.raises(access.MissingAccessRule, match="two access rules"):

        @access.login_required
        @access.public
        def confused() -> str:
            return ""


def test_admin_required(runtime: Runtime, mail_users: dict[str, str]) -> None:
    """403 for a non-admin; an admin needs 2FA (else: set it up) and then gets in."""
    secret = make_admin(runtime)
    make_admin(runtime, "plain-admin@example.test", "plain-admin-pw", two_factor=False)
    app = create_app(runtime, testing=True)

    @access.admin_required
    def admin_only() -> str:
        return "admin page"

    app.add_url_rule("/admin-only", "admin_only", admin_only)
    client: FlaskClient = app.test_client()
    assert client.get("/admin-only").status_code == 302  # not logged in: to the login page

    def log_in(email: str, password: str) -> None:
        token = csrf_from(client.get("/login").text)
        response = client.post(
            "/login", data={"email": email, "password": password, "csrf_token": token}
        )
        assert response.status_code == 302

    def log_out() -> None:
        client.post("/logout", data={"csrf_token": csrf_from(client.get("/inbox").text)})

    log_in("alice@example.test", "portal-alice-smtp-pw")
    assert client.get("/admin-only").status_code == 403
    log_out()
    log_in("plain-admin@example.test", "plain-admin-pw")
    refused = client.get("/admin-only")
    assert refused.status_code == 302 and refused.headers["Location"] == "/account/2fa/enable"
    log_out()
    assert admin_login(client, secret).status_code == 302
    response = client.get("/admin-only")
    assert response.status_code == 200 and response.text == "admin page"


def test_the_listing_of_every_view_and_its_rule(app: Flask) -> None:
    """Every URL of the portal with its access rule; a view without one fails the listing."""
    listing = {
        rule.rule: access.access_rule(app.view_functions[rule.endpoint])
        for rule in app.url_map.iter_rules()
        if rule.endpoint not in access.BUILTIN_PUBLIC_ENDPOINTS
    }
    assert None not in listing.values(), sorted(k for k, v in listing.items() if v is None)
    admin = {url: rule for url, rule in listing.items() if url.startswith("/admin")}
    assert len(admin) >= 25 and set(admin.values()) == {"admin_required"}
    # Nothing outside /admin is admin-only by accident, and the settings page needs a login.
    assert all(url.startswith("/admin") for url, r in listing.items() if r == "admin_required")
    assert listing["/account/settings"] == "login_required"

    @access.public
    def declared() -> str:
        return ""

    def undeclared() -> str:
        return ""

    app.add_url_rule("/declared", "declared", declared)
    app.add_url_rule("/undeclared", "undeclared", undeclared)
    assert access.endpoints_without_rule(app) == ["undeclared"]


def test_public_index_sends_visitors_to_login(
    client: FlaskClient, mail_users: dict[str, str], login: LoginFn
) -> None:
    assert client.get("/").headers["Location"] == "/inbox"
    assert client.get("/inbox").headers["Location"].startswith("/login")
