"""Step `find-external-keys` against a real HTTPS key directory and a real database.

An admin import wins over WKD; a WKD key is stored and used until the cache TTL
runs out; a lookup that found nothing is not repeated before the failure TTL; a
revoked, expired or foreign key is never returned; a hostile answer costs one
parse budget and the other recipients are still resolved; and the delivery
records where each key came from.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ssl
from collections.abc import Iterator
from pathlib import Path

import pysequoia
import pytest
import sqlalchemy as sa
import trustme

from gateway import db, pipeline
from gateway.models import Account, AuditEvent
from gateway.pipeline.context import ClientInfo, Handling, Sender, Submission
from gateway.pipeline.external_keys import lookup_external_keys, parse_budget
from gateway.runtime import Runtime
from gateway.wkd_client import Transport
from keystore import directory, untrusted
from keystore.models import ExternalKey, WkdMiss
from tests.fakes.wkd_server import WkdServer
from tests.gnupg import GnuPG
from tests.keystore.conftest import audit_sink
from tests.keystore.gpgkeys import export, key_with_new_subkey, make_key, revoke_key
from tests.keystore.hostile import hostile_armor

CAROL, DAN = "carol@partner.example", "dan@direct.example"
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


@pytest.fixture(autouse=True)
def _now() -> None:
    """Each test's "now" is taken when it starts: keys the test makes with GnuPG are
    created then, and a clock fixed at import (minutes earlier in a loaded suite) would
    see them as made in the future."""
    global NOW
    NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


@pytest.fixture
def wkd(tls_ca: trustme.CA) -> Iterator[WkdServer]:
    server = WkdServer(tls_ca, ["openpgpkey.partner.example", "partner.example", "direct.example"])
    yield server
    server.close()


@pytest.fixture
def rt(runtime: Runtime, wkd: WkdServer, client_ssl_context: ssl.SSLContext) -> Runtime:
    transport = Transport(resolver=wkd.resolver, ssl_context=client_ssl_context)
    return dataclasses.replace(runtime, wkd_transport=transport)


@pytest.fixture
def partner(tmp_path: Path) -> GnuPG:
    home = tmp_path / "partner"
    home.mkdir(mode=0o700)
    return GnuPG(home)


def with_keys(runtime: Runtime, **keys: object) -> Runtime:
    return dataclasses.replace(runtime, settings=runtime.settings.replace(keys=keys))


def import_key(runtime: Runtime, data: bytes) -> None:
    budget = parse_budget(runtime.settings.keys)
    with db.transaction(runtime.sessions) as session:
        for vetted in untrusted.vet_keys(data, NOW, budget).accepted:
            directory.save(session, vetted, "import", NOW, events=audit_sink)


def miss_reason(runtime: Runtime, address: str) -> str | None:
    with db.read_only(runtime.sessions) as session:
        miss = session.get(WkdMiss, address)
        return miss.reason if miss else None


def test_imported_key_wins_and_wkd_is_not_asked(
    rt: Runtime, wkd: WkdServer, partner: GnuPG
) -> None:
    imported = make_key(partner, f"Carol <{CAROL}>")
    published = make_key(partner, f"Carol at home <{CAROL}>")
    import_key(rt, export(partner, imported))
    wkd.publish(CAROL, export(partner, published))
    found = lookup_external_keys(rt, [CAROL], NOW)
    assert (found[CAROL].source, found[CAROL].fingerprint) == ("import", imported)
    assert wkd.requests == []


def test_a_wkd_key_with_an_x448_subkey_is_used_by_its_curve25519_one(
    rt: Runtime, wkd: WkdServer, partner: GnuPG
) -> None:
    """pgpy knows no X448: the whole key was refused, and Carol got the secure page."""
    data, cv25519 = key_with_new_subkey(
        partner, f"Carol <{CAROL}>", pysequoia.EncryptionAlgorithm.X448
    )
    wkd.publish(CAROL, data)
    found = lookup_external_keys(rt, [CAROL], NOW)
    assert found[CAROL].source == "wkd"
    assert found[CAROL].key.subkey_ids == (cv25519,)


def test_wkd_key_is_stored_and_reused_until_the_ttl(
    rt: Runtime, wkd: WkdServer, partner: GnuPG
) -> None:
    fpr = make_key(partner, f"Carol <{CAROL}>")
    wkd.publish(CAROL, export(partner, fpr))
    found = lookup_external_keys(rt, [CAROL], NOW)
    assert (found[CAROL].source, found[CAROL].fingerprint, found[CAROL].address) == (
        "wkd",
        fpr,
        CAROL,
    )
    assert len(wkd.requests_for(CAROL)) == 1

    ttl = rt.settings.keys.wkd_cache_ttl
    within = NOW + dt.timedelta(seconds=ttl - 1)
    assert lookup_external_keys(rt, [CAROL], within)[CAROL].fingerprint == fpr
    assert len(wkd.requests_for(CAROL)) == 1  # from the database, no request

    after = NOW + dt.timedelta(seconds=ttl + 1)
    assert lookup_external_keys(rt, [CAROL], after)[CAROL].fingerprint == fpr
    assert len(wkd.requests_for(CAROL)) == 2
    with db.read_only(rt.sessions) as session:
        (row,) = session.scalars(sa.select(ExternalKey)).all()
        assert (row.source, row.fetched_at, row.last_checked) == ("wkd", NOW, after)
        events = session.scalars(sa.select(AuditEvent.action)).all()
    assert events == ["external-key.add"]  # the refresh changed nothing worth a record


def test_a_failed_lookup_is_remembered_for_the_failure_ttl(rt: Runtime, wkd: WkdServer) -> None:
    assert lookup_external_keys(rt, [CAROL], NOW) == {}
    assert len(wkd.requests_for(CAROL)) == 1
    reason = miss_reason(rt, CAROL)
    assert reason is not None and "HTTP 404" in reason

    ttl = rt.settings.keys.wkd_failure_ttl
    assert lookup_external_keys(rt, [CAROL], NOW + dt.timedelta(seconds=ttl - 1)) == {}
    assert len(wkd.requests_for(CAROL)) == 1
    assert lookup_external_keys(rt, [CAROL], NOW + dt.timedelta(seconds=ttl + 1)) == {}
    assert len(wkd.requests_for(CAROL)) == 2


def test_a_key_revoked_at_the_directory_is_dropped(
    rt: Runtime, wkd: WkdServer, partner: GnuPG
) -> None:
    fpr = make_key(partner, f"Carol <{CAROL}>")
    unrevoked = export(partner, fpr)
    wkd.publish(CAROL, unrevoked)
    assert lookup_external_keys(rt, [CAROL], NOW)[CAROL].fingerprint == fpr

    wkd.publish(CAROL, revoke_key(partner, fpr))
    later = NOW + dt.timedelta(seconds=rt.settings.keys.wkd_cache_ttl + 1)
    assert lookup_external_keys(rt, [CAROL], later) == {}
    with db.read_only(rt.sessions) as session:
        (row,) = session.scalars(sa.select(ExternalKey)).all()
        assert row.revoked_at == later
    assert "the key is revoked" in (miss_reason(rt, CAROL) or "")

    # The directory serving the old copy again does not bring the key back.
    wkd.publish(CAROL, unrevoked)
    much_later = later + dt.timedelta(seconds=rt.settings.keys.wkd_failure_ttl + 1)
    assert lookup_external_keys(rt, [CAROL], much_later) == {}
    assert "revoked earlier" in (miss_reason(rt, CAROL) or "")


def test_a_key_for_another_address_is_not_used(rt: Runtime, wkd: WkdServer, partner: GnuPG) -> None:
    wkd.publish(CAROL, export(partner, make_key(partner, "Mallory <m@evil.example>")))
    assert lookup_external_keys(rt, [CAROL], NOW) == {}
    assert f"no user id of the key names {CAROL}" in (miss_reason(rt, CAROL) or "")


def test_an_expired_import_gives_way_to_wkd(rt: Runtime, wkd: WkdServer, partner: GnuPG) -> None:
    short = make_key(partner, f"Carol <{CAROL}>", expire="1d")
    import_key(rt, export(partner, short))
    fresh = make_key(partner, f"Carol 2 <{CAROL}>")
    wkd.publish(CAROL, export(partner, fresh))
    later = NOW + dt.timedelta(days=2)
    found = lookup_external_keys(rt, [CAROL], later)
    assert (found[CAROL].source, found[CAROL].fingerprint) == ("wkd", fresh)


def test_a_hostile_answer_is_refused_within_budget_and_others_resolve(
    rt: Runtime, wkd: WkdServer, partner: GnuPG
) -> None:
    rt = with_keys(rt, parse_timeout=2.0)
    wkd.publish(CAROL, hostile_armor())
    dan = make_key(partner, f"Dan <{DAN}>")
    wkd.publish(DAN, export(partner, dan), method="direct")
    found = lookup_external_keys(rt, [CAROL, DAN], NOW)
    assert list(found) == [DAN] and found[DAN].fingerprint == dan
    assert miss_reason(rt, CAROL) == "answer refused: parsing took longer than 2 s and was stopped"


def test_wkd_off_asks_no_one(rt: Runtime, wkd: WkdServer, partner: GnuPG) -> None:
    wkd.publish(CAROL, export(partner, make_key(partner, f"Carol <{CAROL}>")))
    assert lookup_external_keys(with_keys(rt, wkd=False), [CAROL], NOW) == {}
    assert wkd.requests == []


def test_delivery_records_key_source_and_fingerprint(
    rt: Runtime, wkd: WkdServer, partner: GnuPG, mail_users: dict[str, str]
) -> None:
    carol = make_key(partner, f"Carol <{CAROL}>")
    wkd.publish(CAROL, export(partner, carol))
    with db.read_only(rt.sessions) as session:
        account_id = session.scalar(
            sa.select(Account.id).where(Account.email == "alice@example.test")
        )
    assert account_id is not None
    raw = (
        b"From: alice@example.test\r\nTo: bob@example.test, carol@partner.example\r\n"
        b"Subject: keys\r\nX-Sealgate-Encrypt: yes\r\n\r\nhello\r\n"
    )
    submission = Submission(
        sender=Sender(account_id, "alice@example.test"),
        envelope_from="alice@example.test",
        recipients=["bob@example.test", CAROL],
        raw=raw,
        client=ClientInfo("test", "127.0.0.1", "ESMTPSA"),
        received_at=dt.datetime.now(dt.UTC),
    )
    pipeline.submit(rt, submission)
    by_recipient = {h.recipient: h for h in submission.handling}
    assert by_recipient[CAROL] == Handling(CAROL, "pgp", fingerprint=carol, key_source="wkd")
    assert by_recipient["bob@example.test"].key_source == "hosted"
