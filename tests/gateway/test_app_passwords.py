"""App passwords: random, shown once, stored as digests, per account, revocable.

Threat: a stolen database yielding passwords that open SMTP; one leaked mail
program's password forcing a change of every other.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from gateway import app_passwords, db
from gateway.models import Account, AppPassword, AuditEvent
from gateway.runtime import Runtime

NOW = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)


def get_account(session: sa.orm.Session, email: str) -> Account:
    return session.scalars(sa.select(Account).where(Account.email == email)).one()


def test_create_shows_the_password_once_and_stores_a_digest(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    with db.transaction(runtime.sessions) as session:
        alice = get_account(session, "alice@example.test")
        row, password = app_passwords.create(session, alice, "  Thunderbird   laptop ", NOW)
        assert row.name == "Thunderbird laptop"
    assert len(password) == 20 and all(c in app_passwords.ALPHABET for c in password)
    with runtime.sessions() as session:
        stored = session.scalars(sa.select(AppPassword)).one()
        assert password not in stored.digest and len(stored.digest) == 64
        event = session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == "app_password.create")
        ).one()
        assert event.target == "Thunderbird laptop" and password not in event.detail


def test_verify_accepts_the_displayed_form_and_records_last_use(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    with db.transaction(runtime.sessions) as session:
        alice = get_account(session, "alice@example.test")
        _, password = app_passwords.create(session, alice, "phone", NOW)
        alice_id = alice.id
    shown = app_passwords.format_for_display(password)
    assert shown.count(" ") == 4
    later = NOW + dt.timedelta(hours=1)
    with db.transaction(runtime.sessions) as session:
        match = app_passwords.verify(session, alice_id, shown.upper(), later, ip="192.0.2.4")
        assert match is not None and match.name == "phone"
    with runtime.sessions() as session:
        row = session.scalars(sa.select(AppPassword)).one()
        assert (row.last_used_at, row.last_used_ip) == (later, "192.0.2.4")


@pytest.mark.parametrize("typed", ["", "x" * 20, "short", "a" * 1000, "ä" * 20])
def test_other_input_does_not_verify(
    runtime: Runtime, mail_users: dict[str, str], typed: str
) -> None:
    with db.transaction(runtime.sessions) as session:
        alice = get_account(session, "alice@example.test")
        app_passwords.create(session, alice, "phone", NOW)
        assert app_passwords.verify(session, alice.id, typed, NOW) is None


def test_a_password_belongs_to_its_account(runtime: Runtime, mail_users: dict[str, str]) -> None:
    with db.transaction(runtime.sessions) as session:
        alice = get_account(session, "alice@example.test")
        bob = get_account(session, "bob@example.test")
        _, password = app_passwords.create(session, alice, "phone", NOW)
        assert app_passwords.verify(session, bob.id, password, NOW) is None
        assert app_passwords.verify(session, alice.id, password, NOW) is not None


def test_revoke_one_and_all(runtime: Runtime, mail_users: dict[str, str]) -> None:
    with db.transaction(runtime.sessions) as session:
        alice = get_account(session, "alice@example.test")
        bob = get_account(session, "bob@example.test")
        first, first_pw = app_passwords.create(session, alice, "one", NOW)
        _, second_pw = app_passwords.create(session, alice, "two", NOW)
        _, third_pw = app_passwords.create(session, alice, "three", NOW)
        _, bobs_pw = app_passwords.create(session, bob, "bob's", NOW)
        with pytest.raises(app_passwords.AppPasswordError):
            app_passwords.revoke(session, bob, first.id)  # not his
        assert app_passwords.revoke(session, alice, first.id) == "one"
        assert app_passwords.verify(session, alice.id, first_pw, NOW) is None
        assert app_passwords.verify(session, alice.id, second_pw, NOW) is not None
        assert app_passwords.revoke_all(session, alice) == 2
        assert app_passwords.verify(session, alice.id, third_pw, NOW) is None
        assert app_passwords.verify(session, bob.id, bobs_pw, NOW) is not None


@pytest.mark.parametrize("name", ["", "   ", "x" * 65, "bell\x07", "nul\x00"])
def test_bad_names_are_refused(runtime: Runtime, mail_users: dict[str, str], name: str) -> None:
    with db.transaction(runtime.sessions) as session:
        alice = get_account(session, "alice@example.test")
        with pytest.raises(app_passwords.AppPasswordError):
            app_passwords.create(session, alice, name, NOW)
