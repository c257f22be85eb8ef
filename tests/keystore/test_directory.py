"""The external key directory: one key in use per address and source, sticky revocation,
expiry at the caller's time, WKD misses remembered, every change in the audit log."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway.models import AuditEvent
from keystore import directory, pgp, untrusted
from keystore.models import ExternalKey
from tests.gnupg import GnuPG
from tests.keystore.conftest import audit_sink
from tests.keystore.gpgkeys import export, make_key, revoke_key

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
BUDGET = untrusted.Budget(max_bytes=512 * 1024, timeout=10.0, memory_mb=256)
CAROL = "carol@partner.example"
Sessions = so.sessionmaker[so.Session]


@pytest.fixture(autouse=True)
def _now() -> None:
    """Each test's "now" is taken when it starts: keys the test makes with GnuPG are
    created then, and a clock fixed at import (minutes earlier in a loaded suite) would
    see them as made in the future."""
    global NOW
    NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


@pytest.fixture
def partner(tmp_path: Path) -> GnuPG:
    home = tmp_path / "partner"
    home.mkdir(mode=0o700)
    return GnuPG(home)


def vetted(data: bytes, address: str = CAROL) -> pgp.VettedKey:
    (one,) = untrusted.vet_keys(data, NOW, BUDGET, address=address).accepted
    return one


def actions(sessions: Sessions) -> list[tuple[str, str, str]]:
    with sessions() as session:
        return [
            (e.action, e.target, e.detail)
            for e in session.scalars(sa.select(AuditEvent).order_by(AuditEvent.id))
        ]


def test_save_refresh_and_replace(sessions: Sessions, partner: GnuPG) -> None:
    first = vetted(export(partner, make_key(partner, f"Carol <{CAROL}>")))
    with sessions.begin() as session:
        assert directory.save(session, first, "import", NOW, events=audit_sink) == "added"
    with sessions.begin() as session:
        later = NOW + dt.timedelta(hours=1)
        assert directory.save(session, first, "import", later, events=audit_sink) == "unchanged"
        row = directory.usable(session, CAROL, "import", later)
        assert row is not None and row.last_checked == later and row.fetched_at == NOW
        assert directory.public_key_of(row).fingerprint == first.fingerprint
        assert directory.usable(session, CAROL, "wkd", later) is None  # per source

    second = vetted(export(partner, make_key(partner, f"Carol New <{CAROL}>")))
    with sessions.begin() as session:
        assert directory.save(session, second, "import", NOW, events=audit_sink) == "replaced"
        row = directory.usable(session, CAROL.upper(), "import", NOW)
        assert row is not None and row.fingerprint == second.fingerprint
        assert len(directory.list_keys(session, CAROL)) == 1
    assert actions(sessions) == [
        ("external-key.add", CAROL, f"import key {first.fingerprint}"),
        ("external-key.replace", CAROL, f"import key {first.fingerprint} -> {second.fingerprint}"),
    ]


def test_expired_key_is_not_usable(sessions: Sessions, partner: GnuPG) -> None:
    key = vetted(export(partner, make_key(partner, f"Carol <{CAROL}>", expire="1d")))
    assert key.expires_at is not None
    with sessions.begin() as session:
        directory.save(session, key, "import", NOW, events=audit_sink)
        assert (
            directory.usable(session, CAROL, "import", key.expires_at - dt.timedelta(1)) is not None
        )
        assert directory.usable(session, CAROL, "import", key.expires_at) is None


def test_wkd_key_is_usable_only_while_fresh(sessions: Sessions, partner: GnuPG) -> None:
    key = vetted(export(partner, make_key(partner, f"Carol <{CAROL}>")))
    with sessions.begin() as session:
        directory.save(session, key, "wkd", NOW, events=audit_sink)
    with sessions() as session:
        fresh_since = NOW - dt.timedelta(hours=1)
        assert directory.usable(session, CAROL, "wkd", NOW, checked_since=fresh_since)
        stale_since = NOW + dt.timedelta(seconds=1)
        assert directory.usable(session, CAROL, "wkd", NOW, checked_since=stale_since) is None


def test_revocation_sticks(sessions: Sessions, partner: GnuPG) -> None:
    fpr = make_key(partner, f"Carol <{CAROL}>")
    unrevoked = export(partner, fpr)
    key = vetted(unrevoked)
    with sessions.begin() as session:
        directory.save(session, key, "import", NOW, events=audit_sink)
        directory.save(session, key, "wkd", NOW, events=audit_sink)

    rejected = untrusted.vet_keys(revoke_key(partner, fpr), NOW, BUDGET).rejected
    assert [(r.fingerprint, r.code) for r in rejected] == [(fpr, "revoked")]
    with sessions.begin() as session:
        assert directory.mark_revoked(session, fpr, NOW, events=audit_sink) == [CAROL]
    with sessions.begin() as session:
        assert directory.usable(session, CAROL, "import", NOW) is None
        assert directory.usable(session, CAROL, "wkd", NOW) is None
        # The old copy, without its revocation, does not bring the key back.
        assert directory.save(session, key, "import", NOW, events=audit_sink) == "revoked"
        assert directory.usable(session, CAROL, "import", NOW) is None
        rows = session.scalars(sa.select(ExternalKey)).all()
        assert {(r.source, r.revoked_at) for r in rows} == {("import", NOW), ("wkd", NOW)}
    assert [a[0] for a in actions(sessions)].count("external-key.revoke") == 2


def test_wkd_misses_are_remembered_until_retry(sessions: Sessions) -> None:
    retry = NOW + dt.timedelta(minutes=15)
    with sessions.begin() as session:
        directory.record_miss(session, CAROL, "no key at https://x (HTTP 404)", NOW, retry)
    with sessions.begin() as session:
        miss = directory.active_miss(session, CAROL, NOW + dt.timedelta(minutes=14))
        assert miss is not None and miss.reason.endswith("(HTTP 404)")
        assert directory.active_miss(session, CAROL, retry) is None
        directory.record_miss(session, CAROL, "again " * 100, retry, retry + dt.timedelta(1))
    with sessions.begin() as session:
        miss = directory.active_miss(session, CAROL, retry)
        assert miss is not None and len(miss.reason) == directory.MAX_REASON
        directory.clear_miss(session, CAROL)
        assert directory.active_miss(session, CAROL, retry) is None
