"""Each user sets their own language and "always encrypt"; both take effect and are audited."""

from __future__ import annotations

import sqlalchemy as sa
from flask.testing import FlaskClient

from gateway import db
from gateway.models import Account, AuditEvent
from gateway.runtime import Runtime

from .conftest import LoginFn, csrf_from


def test_a_user_sets_language_and_always_encrypt(
    client: FlaskClient, login: LoginFn, runtime: Runtime, mail_users: dict[str, str]
) -> None:
    login("alice@example.test", "portal-alice-smtp-pw")
    page = client.get("/account/settings")
    assert page.status_code == 200 and 'name="always_encrypt"' in page.text
    response = client.post(
        "/account/settings",
        data={"language": "de", "always_encrypt": "on", "csrf_token": csrf_from(page.text)},
        environ_base={"REMOTE_ADDR": "198.51.100.4"},
    )
    assert response.status_code == 302
    again = client.get("/account/settings")
    assert "Einstellungen" in again.text and "Ihre Einstellungen wurden gespeichert." in again.text
    with db.read_only(runtime.sessions) as session:
        alice = session.scalar(sa.select(Account).where(Account.email == "alice@example.test"))
        assert alice is not None and (alice.language, alice.always_encrypt) == ("de", True)
        events = session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action.startswith("preferences."))
        ).all()
        assert {(e.action, e.detail, e.actor, e.ip) for e in events} == {
            ("preferences.language", "de", "alice@example.test", "198.51.100.4"),
            ("preferences.always_encrypt", "on", "alice@example.test", "198.51.100.4"),
        }


def test_settings_need_a_token_and_refuse_an_odd_language(
    client: FlaskClient, login: LoginFn, runtime: Runtime, mail_users: dict[str, str]
) -> None:
    login("bob@example.test", "portal-bob-smtp-pw")
    assert client.post("/account/settings", data={"always_encrypt": "on"}).status_code == 400
    token = csrf_from(client.get("/account/settings").text)
    odd = client.post("/account/settings", data={"language": "xx" * 50, "csrf_token": token})
    assert odd.status_code == 302
    with db.read_only(runtime.sessions) as session:
        bob = session.scalar(sa.select(Account).where(Account.email == "bob@example.test"))
        assert bob is not None and (bob.language, bob.always_encrypt) == ("en", False)
    assert client.get("/account/settings").status_code == 200
