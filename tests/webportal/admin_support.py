"""Helpers for the admin console tests: an admin account with 2FA, and its login."""

from __future__ import annotations

import datetime as dt

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from gateway import accounts, db, totp
from gateway.runtime import Runtime

from .conftest import csrf_from

ROOT = "root@example.test"
ROOT_PW = "root-portal-password"
ADMIN_IP = "203.0.113.9"


def make_admin(
    runtime: Runtime, email: str = ROOT, password: str = ROOT_PW, *, two_factor: bool = True
) -> str | None:
    """An admin account (with 2FA on unless told otherwise); returns its TOTP secret.

    2FA is turned on as of two minutes ago, so a code for the current time step
    is not a replay of the enrolment code.
    """
    then = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=2)
    with db.transaction(runtime.sessions) as session:
        if accounts.find_domain(session, "example.test") is None:
            accounts.add_domain(session, "example.test", actor="test")
        account = accounts.add_account(
            session, runtime.hasher, email, password, actor="test", is_admin=True
        )
        session.flush()
        if not two_factor:
            return None
        ring = totp.ring_for(runtime.settings)
        secret = totp.start_enrolment(session, ring, account.id, then)
        code = totp.code_at(secret, totp.time_step(then))
        assert totp.confirm_enrolment(session, ring, account, code, then) is not None
    return secret


def current_code(secret: str, now: dt.datetime | None = None) -> str:
    return totp.code_at(secret, totp.time_step(now or dt.datetime.now(dt.UTC)))


def admin_login(
    client: FlaskClient,
    secret: str | None,
    email: str = ROOT,
    password: str = ROOT_PW,
    now: dt.datetime | None = None,
) -> TestResponse:
    env = {"REMOTE_ADDR": ADMIN_IP, "wsgi.url_scheme": "https"}
    page = client.get("/login", environ_base=env)
    response = client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": csrf_from(page.text)},
        environ_base=env,
    )
    if secret is None:
        return response
    assert response.headers["Location"].endswith("/login/code")
    form = client.get("/login/code", environ_base=env)
    return client.post(
        "/login/code",
        data={"code": current_code(secret, now), "csrf_token": csrf_from(form.text)},
        environ_base=env,
    )
