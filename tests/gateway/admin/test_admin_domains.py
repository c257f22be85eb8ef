"""Purging a domain leaves no account behind that has nothing left, and takes none that has.

The defect: a purge deleted the domain's addresses but kept their accounts, so
their logins pointed into no hosted domain while the rows kept 2FA secrets, app
passwords and sessions. The promise, checked over any mix of logins and addresses
in the purged domain, another hosted domain and outside: an account goes exactly
when it had something in the domain (an address, or its login) and no address
anywhere else; every other account keeps exactly its addresses outside the domain.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import accounts, db
from gateway.admin import Actor
from gateway.admin import domains as admin_domains
from gateway.models import Account, Address
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
    expected: dict[str, tuple[str, ...] | None] = {}  # login -> addresses after, None: deleted
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
            expected[login] = None if touched and not outside else outside
        admin_domains.delete(session, domains[PURGED], actor=ADMIN, now=NOW, purge=True)
    with db.read_only(runtime.sessions) as session:
        for login, addresses in expected.items():
            row = accounts.find_account(session, login)
            if addresses is None:
                assert row is None, login
            else:
                assert row is not None, login
                assert tuple(sorted(a.address for a in row.addresses)) == addresses, login
        assert accounts.find_domain(session, domains[PURGED]) is None
        assert not session.scalars(
            sa.select(Address.address).where(Address.address.endswith(f"@{domains[PURGED]}"))
        ).all()
        assert session.scalar(sa.select(Account).where(Account.email == ADMIN.name)) is not None
