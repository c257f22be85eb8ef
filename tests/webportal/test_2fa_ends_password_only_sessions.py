"""Turning two-factor login on ends the account's other portal sessions.

Threat: someone who learnt the password signed in before the owner turned 2FA on.
The owner turns it on because of that; mail programs on address passwords are cut
off at once (`gateway.logins.still_valid`), but a browser session that never passed
a second factor stayed signed in for as long as it kept being used. After the
switch every portal session must have passed every factor the account asks for.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from flask import Flask

from gateway.models import AuditEvent, PortalSession
from gateway.runtime import Runtime
from webportal.clock import set_clock

from .account_support import Browser, FakeClock, enable_2fa, secret_from, text_of


@pytest.fixture
def clock(app: Flask) -> FakeClock:
    fake = FakeClock()
    set_clock(app, fake)
    return fake


def test_enabling_2fa_signs_out_the_other_sessions(
    app: Flask, runtime: Runtime, mail_users: dict[str, str], clock: FakeClock
) -> None:
    owner = Browser(app.test_client(), ip="203.0.113.5")
    intruder = Browser(app.test_client(), ip="198.51.100.66")
    assert owner.login().status_code == 302
    assert intruder.login().status_code == 302
    assert intruder.get("/inbox").status_code == 200

    _secret, codes = enable_2fa(owner, clock)
    assert len(codes) == 10

    # The session that passed no second factor is gone; the owner's stays.
    signed_out = intruder.get("/inbox")
    assert signed_out.status_code == 302
    assert signed_out.headers["Location"].startswith("/login")
    assert owner.get("/inbox").status_code == 200
    with runtime.sessions() as session:
        rows = session.scalars(sa.select(PortalSession).order_by(PortalSession.id)).all()
        enabled = session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == "2fa.enable")
        ).one()
    assert [(row.ended_at is None, row.end_reason) for row in rows] == [
        (True, ""),
        (False, "two-factor login turned on"),
    ]
    assert enabled.detail == "1 other session(s) ended"


def test_the_recovery_codes_page_says_other_sessions_were_ended(
    app: Flask, mail_users: dict[str, str], clock: FakeClock
) -> None:
    owner = Browser(app.test_client())
    other = Browser(app.test_client(), ip="203.0.113.9")
    owner.login()
    other.login()
    page = owner.get("/account/2fa/enable")
    done = owner.post("/account/2fa/enable", {"code": clock.code(secret_from(page.text))})
    assert done.status_code == 200
    assert "Your other sessions were signed out: 1." in text_of(done.text)
