"""Names matched with SQL LIKE take `_` and `%` literally.

Threat: a pattern built from a name with LIKE's wildcards left in it matches other
names: `_` any one character, `%` any run. Deleting the domain `a_b.example` then
counted and deleted the aliases of `axb.example` too, and the audit log filter
`a_ias` listed the `alias.*` events. Hosted domain names cannot hold either
character today (`normalize_hosted_domain`), but a row from an older schema, a
restore or a hand-edited database can, and the delete must not depend on a
check made somewhere else; the audit filter is typed by the admin.

The promise, over random names full of wildcards: a name's match is exactly the
rows that carry that name.
"""

from __future__ import annotations

import datetime as dt
import itertools

import sqlalchemy as sa
import sqlalchemy.orm as so
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import accounts, audit, db
from gateway.admin import Actor, audit_log
from gateway.admin import domains as admin_domains
from gateway.models import Alias, AuditEvent, Domain
from gateway.runtime import Runtime

ADMIN = Actor("root@keep.test", ip="192.0.2.1", user_agent="console")
NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
WORLDS = itertools.count()

# Few letters, so that names differing only where a wildcard stands come up often.
labels = st.text(alphabet="ax_%", min_size=1, max_size=3)
domain_names = st.builds(lambda label, n: f"{label}.w{n}.example", labels, st.integers(0, 1))


def _target(session: so.Session, runtime: Runtime) -> int:
    """The address every alias of the test delivers to, in a domain of its own."""
    found = accounts.find_address(session, "owner@keep.test")
    if found is not None:
        return found.id
    accounts.add_domain(session, "keep.test", actor="test")
    owner = accounts.add_account(
        session, runtime.hasher, ADMIN.name, "pw", actor="t", is_admin=True
    )
    return accounts.add_address(
        session, runtime.hasher, "owner@keep.test", owner, "pw", actor="t"
    ).id


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    names=st.lists(domain_names, min_size=2, max_size=5, unique=True),
    per_name=st.lists(st.integers(0, 2), min_size=5, max_size=5),
    victim=st.integers(0, 4),
)
def test_a_domain_counts_and_purges_exactly_its_own_aliases(
    runtime: Runtime, names: list[str], per_name: list[int], victim: int
) -> None:
    n = next(WORLDS)
    names = [name.replace(".w", f".w{n}x", 1) for name in names]  # fresh per example
    doomed = names[victim % len(names)]
    with db.transaction(runtime.sessions) as session:
        target = _target(session, runtime)
        for name, count in zip(names, per_name, strict=False):
            # Straight into the table: no hosted-name check stands between a row and the query.
            session.add(Domain(name=name, created_at=NOW))
            for i in range(count):
                session.add(Alias(alias=f"{i}_%{i}@{name}", address_id=target))
        session.flush()
        before = set(session.scalars(sa.select(Alias.alias)))
        aliases_of = {name: {a for a in before if a.rpartition("@")[2] == name} for name in names}

        preview = admin_domains.preview_delete(session, doomed)
        assert preview.aliases == len(aliases_of[doomed])
        admin_domains.delete(session, doomed, actor=ADMIN, now=NOW, purge=True)
        after = set(session.scalars(sa.select(Alias.alias)))
        assert before - after == aliases_of[doomed]
        for name in names:
            if name != doomed:
                assert admin_domains.preview_delete(session, name).aliases == len(aliases_of[name])


ACTIONS = ("alias.add", "alias.remove", "axias.add", "a%ias.add", "key.rotate", "keyxrotate")


def _with_wildcards(word: str, where: list[int], wildcard: str) -> str:
    return "".join(wildcard if i in where else c for i, c in enumerate(word))


# A real action or kind, some of its characters replaced by `_` or `%` (or a run of them).
typed_filters = st.one_of(
    st.sampled_from(["alias", "axias", "key", *ACTIONS]),
    st.builds(
        _with_wildcards,
        st.sampled_from(["alias", "axias", "key", "alias.add", "key.rotate"]),
        st.lists(st.integers(0, 9), min_size=1, max_size=3),
        st.sampled_from(["_", "%", "%%", "_%"]),
    ),
    st.text(alphabet="aliasx_%.", min_size=1, max_size=8),
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(typed=typed_filters)
def test_the_audit_action_filter_matches_exactly_that_action_and_its_kinds(
    runtime: Runtime, typed: str
) -> None:
    """ "alias" finds alias.add and alias.remove; "a_ias" finds nothing but an action
    really spelt so; "a%" finds no action at all unless one starts "a%."."""
    with db.transaction(runtime.sessions) as session:
        if session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)) == 0:
            for action in ACTIONS:
                audit.record(session, action, actor="t@keep.test", target="x")
        found = audit_log.query(session, audit_log.AuditFilter(action=typed), 1, 100)
        expected = sorted(a for a in ACTIONS if a == typed or a.startswith(typed + "."))
        assert sorted(e.action for e in found.items) == expected
