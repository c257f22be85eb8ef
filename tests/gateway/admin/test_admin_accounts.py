"""Account administration rules that protect admins from their own slips."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from gateway import accounts, db
from gateway.admin import Actor, AdminError, audit_log
from gateway.admin import accounts as admin_accounts
from gateway.models import AuditEvent
from gateway.runtime import Runtime

ADMIN = Actor("root@example.test", ip="192.0.2.1", user_agent="console")
NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)


def test_search_matches_logins_and_addresses_and_pages(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    with db.transaction(runtime.sessions) as session:
        for i in range(5):
            admin_accounts.create(
                session, runtime.settings, runtime.hasher, f"user{i}@example.test", "pw-long-1",
                actor=ADMIN,
            )  # fmt: skip
        bob = accounts.find_account(session, "bob@example.test")
        assert bob is not None
        admin_accounts.add_address(
            session, runtime.hasher, "bob.sales@example.test", bob.email, "pw-x", actor=ADMIN
        )
    with db.read_only(runtime.sessions) as session:
        first = admin_accounts.search(session, "user", 1, 2)
        assert [a.email for a in first.items] == ["user0@example.test", "user1@example.test"]
        assert (first.total, first.pages, first.has_next, first.has_previous) == (5, 3, True, False)
        last = admin_accounts.search(session, "user", 99, 2)  # past the end: the last page
        assert last.page == 3 and [a.email for a in last.items] == ["user4@example.test"]
        by_address = admin_accounts.search(session, "sales", 1, 10)
        assert [a.email for a in by_address.items] == ["bob@example.test"]
        assert admin_accounts.search(session, "%", 1, 10).total == 0  # LIKE wildcards are literal
        assert admin_accounts.search(session, "", 1, 100).total == 7


def test_the_last_admin_cannot_be_demoted_or_deleted(runtime: Runtime) -> None:
    with db.transaction(runtime.sessions) as session:
        accounts.add_domain(session, "example.test", actor="test")
        admin_accounts.create(
            session, runtime.settings, runtime.hasher, "root@example.test", "pw-long-enough",
            actor=ADMIN, role="admin",
        )  # fmt: skip
        with pytest.raises(AdminError, match="last admin"):
            admin_accounts.set_role(session, "root@example.test", "user", actor=ADMIN)
        with pytest.raises(AdminError, match="last admin"):
            admin_accounts.delete(
                session, "root@example.test", actor=ADMIN, now=NOW, confirm="root@example.test"
            )
        with pytest.raises(AdminError, match="type the login"):
            admin_accounts.delete(
                session, "root@example.test", actor=ADMIN, now=NOW, confirm="root@example.tes"
            )


def test_the_last_enabled_admin_cannot_be_disabled_demoted_or_deleted(runtime: Runtime) -> None:
    """A disabled admin cannot sign in, so an admin count that includes disabled ones let
    the only admin who can still sign in be disabled, demoted or deleted: nobody could
    reach the console any more."""
    with db.transaction(runtime.sessions) as session:
        accounts.add_domain(session, "example.test", actor="test")
        for login in ("root@example.test", "old@example.test"):
            admin_accounts.create(
                session, runtime.settings, runtime.hasher, login, "pw-long-enough",
                actor=ADMIN, role="admin",
            )  # fmt: skip
        admin_accounts.set_disabled(session, "old@example.test", True, actor=ADMIN, now=NOW)
        with pytest.raises(AdminError, match="last admin who can sign in"):
            admin_accounts.set_disabled(session, "root@example.test", True, actor=ADMIN, now=NOW)
        with pytest.raises(AdminError, match="last admin who can sign in"):
            admin_accounts.set_role(session, "root@example.test", "user", actor=ADMIN)
        with pytest.raises(AdminError, match="last admin who can sign in"):
            admin_accounts.delete(
                session, "root@example.test", actor=ADMIN, now=NOW, confirm="root@example.test"
            )
        # The disabled admin can go: the one who signs in stays.
        admin_accounts.set_role(session, "old@example.test", "user", actor=ADMIN)
        admin_accounts.set_role(session, "old@example.test", "admin", actor=ADMIN)
        admin_accounts.delete(
            session, "old@example.test", actor=ADMIN, now=NOW, confirm="old@example.test"
        )
        root = accounts.find_account(session, "root@example.test")
        assert root is not None and root.is_admin and root.disabled_at is None


def test_created_accounts_and_addresses_are_audited_with_the_client(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    with db.transaction(runtime.sessions) as session:
        admin_accounts.create(
            session, runtime.settings, runtime.hasher, "carol@example.test", "pw-long-enough",
            actor=ADMIN,
        )  # fmt: skip
        admin_accounts.add_address(
            session, runtime.hasher, "carol@example.test", "carol@example.test", "pw", actor=ADMIN
        )
        with pytest.raises(AdminError, match="not in a hosted domain"):
            admin_accounts.create(
                session, runtime.settings, runtime.hasher, "x@outside.test", "pw", actor=ADMIN
            )
    with db.read_only(runtime.sessions) as session:
        events = session.scalars(sa.select(AuditEvent).where(AuditEvent.actor == ADMIN.name)).all()
        assert {(e.action, e.target, e.ip, e.user_agent) for e in events} == {
            ("account.add", "carol@example.test", "192.0.2.1", "console"),
            ("address.add", "carol@example.test", "192.0.2.1", "console"),
            # The address's OpenPGP key is made with it (issue 13), by the same actor.
            ("key.create", "carol@example.test", "192.0.2.1", "console"),
        }


def test_csv_export_cannot_smuggle_a_formula_into_a_spreadsheet(runtime: Runtime) -> None:
    with db.transaction(runtime.sessions) as session:
        ADMIN.record(session, "login", target='=HYPERLINK("http://evil")', success=False)
    with db.read_only(runtime.sessions) as session:
        exported = audit_log.export_csv(session, audit_log.AuditFilter(action="login"))
    assert "'=HYPERLINK" in exported and ",=HYPERLINK" not in exported


@pytest.mark.parametrize(
    "login",
    [
        "\u202eadmin@example.test",  # right-to-left override: the login reads backwards
        "ad\u200bmin@example.test",  # zero-width space: looks like admin@
        "ad\u00admin@example.test",  # soft hyphen, invisible
        "ad\u0085min@example.test",  # a C1 control (NEL)
        "ad\u2028min@example.test",  # line separator
        "ad\u00a0min@example.test",  # no-break space
        "e\u0301ve@example.test",  # "éve" not in NFC: a second row for one address
    ],
)
def test_a_new_login_address_or_alias_with_invisible_or_unnormalised_characters_is_refused(
    runtime: Runtime, mail_users: dict[str, str], login: str
) -> None:
    """Non-ASCII local parts are welcome (RFC 6531), but a hosted name an admin cannot see
    whole, one that reorders what follows it, or two spellings of one name, are spoofs."""
    with db.transaction(runtime.sessions) as session:
        with pytest.raises(AdminError, match="not a valid mail address"):
            admin_accounts.create(
                session, runtime.settings, runtime.hasher, login, "pw-long-enough", actor=ADMIN
            )
        with pytest.raises(AdminError, match="not a valid mail address"):
            admin_accounts.add_address(
                session, runtime.hasher, login, "alice@example.test", "pw-long-1", actor=ADMIN
            )
        with pytest.raises(AdminError, match="not a valid mail address"):
            admin_accounts.add_alias(session, login, "alice@example.test", actor=ADMIN)
        # Plain non-ASCII stays fine.
        admin_accounts.create(
            session, runtime.settings, runtime.hasher, "jörg@example.test", "pw-long-enough",
            actor=ADMIN,
        )  # fmt: skip
