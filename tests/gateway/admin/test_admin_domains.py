"""Purging a domain leaves no account behind that has nothing left, and takes none that has.

The defect: a purge deleted the domain's addresses but kept their accounts, so
their logins pointed into no hosted domain while the rows kept 2FA secrets, app
passwords and sessions. The promise, checked over any mix of logins and addresses
in the purged domain, another hosted domain and outside: an account goes exactly
when it had something in the domain (an address, or its login) and no address
anywhere else; every other account keeps exactly its addresses outside the domain.

The second defect: an account kept for its address elsewhere kept its login in the
purged domain, a name no longer hosted here; its security alerts and key exports
went to that name, out to whoever holds the domain now. Its login moves to one of
its remaining addresses (audited, and reported to the admin), so after a purge no
login is in the purged domain.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import accounts, db
from gateway.admin import Actor, AdminError
from gateway.admin import domains as admin_domains
from gateway.models import Account, Address, AuditEvent
from gateway.runtime import Runtime

ADMIN = Actor("root@keep.test", ip="192.0.2.1", user_agent="console")
NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
WORLDS = itertools.count()

# Where a login or an address is: the purged domain, another hosted one, or outside.
PURGED, OTHER, OUTSIDE = "purged", "other", "outside"


@dataclass(frozen=True)
class Shape:
    login_in: str
    in_purged: int  # addresses in the purged domain
    in_other: int  # addresses in the other hosted domain


shapes = st.builds(
    Shape,
    login_in=st.sampled_from([PURGED, OTHER, OUTSIDE]),
    in_purged=st.integers(0, 2),
    in_other=st.integers(0, 1),
)


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(world=st.lists(shapes, min_size=1, max_size=4))
def test_a_purge_deletes_exactly_the_accounts_it_leaves_with_nothing(
    runtime: Runtime, world: list[Shape]
) -> None:
    n = next(WORLDS)
    domains = {PURGED: f"p{n}.test", OTHER: f"o{n}.test", OUTSIDE: f"x{n}.example"}
    # login -> (login after, addresses after); None: deleted
    expected: dict[str, tuple[str, tuple[str, ...]] | None] = {}
    with db.transaction(runtime.sessions) as session:
        if accounts.find_account(session, ADMIN.name) is None:
            # An admin outside every purged domain, so the last-admin guard never refuses.
            accounts.add_domain(session, "keep.test", actor="test")
            accounts.add_account(
                session, runtime.hasher, ADMIN.name, "pw", actor="t", is_admin=True
            )
        accounts.add_domain(session, domains[PURGED], actor="test")
        accounts.add_domain(session, domains[OTHER], actor="test")
        for i, shape in enumerate(world):
            login = f"u{i}@{domains[shape.login_in]}"
            account = accounts.add_account(session, runtime.hasher, login, "pw", actor="t")
            for where, count in ((PURGED, shape.in_purged), (OTHER, shape.in_other)):
                for j in range(count):
                    address = f"u{i}.{j}@{domains[where]}"
                    accounts.add_address(session, runtime.hasher, address, account, "pw", actor="t")
            outside = tuple(f"u{i}.{j}@{domains[OTHER]}" for j in range(shape.in_other))
            touched = shape.in_purged > 0 or shape.login_in == PURGED
            # A login in the purged domain moves to the first address left (none shares u{i}).
            after = outside[0] if shape.login_in == PURGED and outside else login
            expected[login] = None if touched and not outside else (after, outside)
        done = admin_domains.delete(session, domains[PURGED], actor=ADMIN, now=NOW, purge=True)
    assert dict(done.moved_logins) == {
        login: e[0] for login, e in expected.items() if e is not None and e[0] != login
    }
    with db.read_only(runtime.sessions) as session:
        for login, after in expected.items():
            row = accounts.find_account(session, login if after is None else after[0])
            if after is None:
                assert row is None, login
            else:
                assert row is not None, login
                assert tuple(sorted(a.address for a in row.addresses)) == after[1], login
        assert accounts.find_domain(session, domains[PURGED]) is None
        assert not session.scalars(
            sa.select(Account.email).where(Account.email.endswith(f"@{domains[PURGED]}"))
        ).all()
        assert not session.scalars(
            sa.select(Address.address).where(Address.address.endswith(f"@{domains[PURGED]}"))
        ).all()
        assert session.scalar(sa.select(Account).where(Account.email == ADMIN.name)) is not None


def _account_with(session: so.Session, runtime: Runtime, login: str, *addresses: str) -> int:
    account = accounts.add_account(session, runtime.hasher, login, "pw", actor="t")
    for address in addresses:
        accounts.add_address(session, runtime.hasher, address, account, "pw", actor="t")
    session.flush()
    return account.id


def test_a_kept_login_moves_to_its_namesake_address_and_the_move_is_audited(
    runtime: Runtime,
) -> None:
    """The address with the login's own local part is the login an owner guesses first;
    the preview names the move before the admin confirms, the audit log after it, on
    the account (its owner sees it in their recent activity)."""
    with db.transaction(runtime.sessions) as session:
        accounts.add_domain(session, "keep.test", actor="test")
        accounts.add_account(session, runtime.hasher, ADMIN.name, "pw", actor="t", is_admin=True)
        for name in ("old.test", "new.test"):
            accounts.add_domain(session, name, actor="test")
        ident = _account_with(
            session, runtime, "dora@old.test", "dora@old.test", "a.dora@new.test", "dora@new.test"
        )
        preview = admin_domains.preview_delete(session, "old.test")
        assert preview.moved_logins == (("dora@old.test", "dora@new.test"),)
        assert preview.refusal(purge=True) is None
        admin_domains.delete(session, "old.test", actor=ADMIN, now=NOW, purge=True)
    with db.read_only(runtime.sessions) as session:
        row = session.get(Account, ident)
        assert row is not None and row.email == "dora@new.test"
        event = session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == "account.login")
        ).one()
        assert (event.actor, event.target, event.account_id) == (ADMIN.name, "dora@new.test", ident)
        assert event.detail == "was dora@old.test; purged with domain old.test"


def test_a_purge_is_refused_when_a_kept_login_has_nowhere_to_go(runtime: Runtime) -> None:
    """Every address left to the account is another account's login: no name to move
    its login to. Refused, naming the account, before anything is deleted."""
    with db.transaction(runtime.sessions) as session:
        accounts.add_domain(session, "keep.test", actor="test")
        accounts.add_account(session, runtime.hasher, ADMIN.name, "pw", actor="t", is_admin=True)
        for name in ("old.test", "new.test"):
            accounts.add_domain(session, name, actor="test")
        _account_with(session, runtime, "erin@old.test", "erin@new.test")
        _account_with(session, runtime, "finn@old.test", "finn@new.test")
        # Two logins sitting on erin's and finn's other addresses (an admin made them so).
        _account_with(session, runtime, "erin@new.test")
        _account_with(session, runtime, "finn@new.test")
        preview = admin_domains.preview_delete(session, "old.test")
        refusal = preview.refusal(purge=True)
        assert refusal is not None
        assert "erin@old.test, finn@old.test" in refusal
        assert "every address it keeps is another account's login" in refusal
        with pytest.raises(AdminError, match=re.escape("erin@old.test, finn@old.test")):
            admin_domains.delete(session, "old.test", actor=ADMIN, now=NOW, purge=True)
        assert accounts.find_domain(session, "old.test") is not None
        assert accounts.find_account(session, "erin@old.test") is not None
