"""The sessions page: every login listed; ending one logs that browser out at once.

Threats: a session left open on a shared or stolen computer; a copied cookie
that keeps working after logout (the cookie is signed, not server-side, so
only the registry can refuse it).
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from flask import Flask

from gateway import sessions
from gateway.models import AuditEvent, PortalSession
from gateway.runtime import Runtime
from webportal.clock import set_clock

from .account_support import BOB, CHROME, FIREFOX, Browser, FakeClock, text_of


@pytest.fixture
def clock(app: Flask) -> FakeClock:
    fake = FakeClock()
    set_clock(app, fake)
    return fake


def browser(app: Flask, ip: str, agent: str = FIREFOX) -> Browser:
    return Browser(app.test_client(), ip=ip, agent=agent)


def session_ids(runtime: Runtime, *, live: bool = True) -> list[int]:
    with runtime.sessions() as session:
        query = sa.select(PortalSession.id).order_by(PortalSession.id)
        if live:
            query = query.where(PortalSession.ended_at.is_(None))
        return list(session.scalars(query))


def test_ending_a_session_logs_that_browser_out_on_its_next_request(
    app: Flask, clock: FakeClock, runtime: Runtime, mail_users: dict[str, str]
) -> None:
    """Must show 5."""
    laptop = browser(app, "203.0.113.5", FIREFOX)
    phone = browser(app, "198.51.100.20", CHROME)
    assert laptop.login().status_code == 302
    clock.advance(minutes=2)
    assert phone.login().status_code == 302
    laptop_id, phone_id = session_ids(runtime)

    page = phone.get("/account/sessions")
    assert page.status_code == 200
    listed = text_of(page.text)
    assert "Firefox on Linux" in listed and "203.0.113.5" in listed
    assert "Chrome on Windows (this session)" in listed
    assert f'data-session="{laptop_id}"' in page.text and f'data-session="{phone_id}"' in page.text

    ended = phone.post(f"/account/sessions/{laptop_id}/end", page="/account/sessions")
    assert ended.status_code == 302 and ended.headers["Location"] == "/account/sessions"
    assert "The session was ended." in phone.get("/account/sessions").text

    # The laptop's very next request finds itself logged out.
    after = laptop.get("/inbox")
    assert after.status_code == 302 and after.headers["Location"].startswith("/login")
    assert phone.get("/inbox").status_code == 200
    assert session_ids(runtime) == [phone_id]
    with runtime.sessions() as session:
        event = session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == "session.end")
        ).one()
    assert event.ip == "198.51.100.20" and event.detail == f"session {laptop_id}"


def test_end_all_other_sessions(
    app: Flask, clock: FakeClock, runtime: Runtime, mail_users: dict[str, str]
) -> None:
    browsers = [browser(app, f"192.0.2.{n}") for n in (1, 2, 3)]
    for each in browsers:
        each.login()
    first, second, third = browsers
    response = third.post("/account/sessions/end-others", page="/account/sessions")
    assert response.status_code == 302
    assert "All other sessions were ended." in third.get("/account/sessions").text
    assert first.get("/inbox").status_code == 302
    assert second.get("/inbox").status_code == 302
    assert third.get("/inbox").status_code == 200
    assert len(session_ids(runtime)) == 1


def test_ending_this_session_signs_out(
    app: Flask, clock: FakeClock, runtime: Runtime, mail_users: dict[str, str]
) -> None:
    only = browser(app, "192.0.2.9")
    only.login()
    [mine] = session_ids(runtime)
    response = only.post(f"/account/sessions/{mine}/end", page="/account/sessions")
    assert response.headers["Location"] == "/login"
    assert only.get("/inbox").status_code == 302


def test_another_accounts_session_cannot_be_ended(
    app: Flask, clock: FakeClock, runtime: Runtime, mail_users: dict[str, str]
) -> None:
    alice = browser(app, "192.0.2.1")
    bob = browser(app, "192.0.2.2")
    alice.login()
    bob.login(BOB, "portal-bob-smtp-pw")
    _, bob_id = session_ids(runtime)
    response = alice.post(f"/account/sessions/{bob_id}/end", page="/account/sessions")
    assert response.status_code == 302
    assert "That session had already ended." in alice.get("/account/sessions").text
    assert bob.get("/inbox").status_code == 200
    assert f'data-session="{bob_id}"' not in alice.get("/account/sessions").text


def test_a_copied_cookie_is_refused_after_logout(
    app: Flask, clock: FakeClock, runtime: Runtime, mail_users: dict[str, str]
) -> None:
    original = browser(app, "192.0.2.1")
    original.login()
    cookie = original.client.get_cookie("__Host-sealgate")
    assert cookie is not None
    thief = browser(app, "192.0.2.66")
    thief.client.set_cookie("__Host-sealgate", cookie.value)
    assert thief.get("/inbox").status_code == 200  # a stolen cookie works while the session lives
    original.logout()
    assert thief.get("/inbox").status_code == 302
    assert session_ids(runtime) == []
    with runtime.sessions() as session:
        [row] = session.scalars(sa.select(PortalSession)).all()
    assert row.end_reason == "logout"


def test_an_idle_session_expires(
    app: Flask, clock: FakeClock, runtime: Runtime, mail_users: dict[str, str]
) -> None:
    one = browser(app, "192.0.2.1")
    one.login()
    clock.advance(minutes=runtime.settings.portal.session_minutes - 1)
    assert one.get("/inbox").status_code == 200  # activity keeps it alive
    clock.advance(minutes=runtime.settings.portal.session_minutes - 1)
    assert one.get("/inbox").status_code == 200
    clock.advance(minutes=runtime.settings.portal.session_minutes + 1)
    assert one.get("/inbox").status_code == 302
    with runtime.sessions() as session:
        [row] = session.scalars(sa.select(PortalSession)).all()
        idle = dt.timedelta(minutes=runtime.settings.portal.session_minutes)
        assert sessions.list_active(session, row.account_id, now=clock.now, idle=idle) == []
