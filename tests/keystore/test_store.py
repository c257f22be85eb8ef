"""Address keys through the public API the gateway calls.

Covers: one current key per address even when two processes ask at once (the
database decides), rotation and revocation keeping old mail readable, unlocking
by key id, the public-key cache (parsed once, never stale after a rotation made
by another process), and secrets that do not print or pickle.
"""

from __future__ import annotations

import datetime as dt
import pickle
import threading
from typing import Any

import pytest
import sqlalchemy as sa
import sqlalchemy.exc
import sqlalchemy.orm as so

from gateway.models import AuditEvent
from gateway.runtime import Runtime
from keystore import packets, pgp, store
from keystore.masterkey import MasterKeyError, MasterKeyRing
from keystore.models import MasterKeyVersion, StoredKey
from keystore.wkd import address_hash
from tests.keystore.conftest import audit_sink, run_sealgate
from tests.openpgp import encrypt

NOW = dt.datetime(2026, 5, 4, 8, 30, tzinfo=dt.UTC)
ALICE = "alice@example.test"
BOB = "bob@example.test"
Sessions = so.sessionmaker[so.Session]


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    store.public_key_cache.clear()


def _create(sessions: Sessions, ring: MasterKeyRing, address: str = ALICE) -> StoredKey:
    with sessions.begin() as session:
        return store.get_or_create(session, ring, address, NOW, events=audit_sink)


def _events(sessions: Sessions, action: str) -> list[AuditEvent]:
    with sessions() as session:
        return list(session.scalars(sa.select(AuditEvent).where(AuditEvent.action == action)))


def test_first_use_makes_one_key_and_audits_it(sessions: Sessions, ring: MasterKeyRing) -> None:
    first = _create(sessions, ring, "Alice@Example.TEST ")
    again = _create(sessions, ring, ALICE)
    assert again.id == first.id
    assert first.address == ALICE
    assert first.status == "active"
    assert first.master_version == ring.primary
    assert first.created_at == NOW
    assert first.key_id == first.fingerprint[-16:]
    assert first.wkd_hash == address_hash(ALICE)
    public = pgp.parse_public_key(first.public_key)
    assert public.fingerprint == first.fingerprint
    assert public.subkey_ids == (first.subkey_id,)
    assert public.user_ids == [f"<{ALICE}>"]
    events = _events(sessions, "key.create")
    assert [(e.target, e.actor) for e in events] == [(ALICE, "test")]
    assert first.fingerprint in events[0].detail
    assert events[0].at.tzinfo is not None


def test_database_refuses_a_second_current_key(sessions: Sessions, ring: MasterKeyRing) -> None:
    row = _create(sessions, ring)
    with pytest.raises(sqlalchemy.exc.IntegrityError), sessions.begin() as session:
        session.add(
            StoredKey(
                address=ALICE,
                wkd_hash=row.wkd_hash,
                fingerprint="F" * 40,
                key_id="F" * 16,
                subkey_id="E" * 16,
                public_key=b"x",
                wrapped_secret=b"x",
                master_version=1,
                status="active",
                created_at=NOW,
            )
        )


def test_two_processes_asking_at_once_end_with_one_key(
    runtime: Runtime, ring: MasterKeyRing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both callers see no key, both make one; the unique index lets one insert win.

    On PostgreSQL both threads are held until each has generated its key, so the
    race on the insert is real. SQLite serialises writers at BEGIN IMMEDIATE, so
    the second caller finds the first one's key instead; holding threads there
    would only deadlock.
    """
    postgres = runtime.engine.dialect.name == "postgresql"
    start = threading.Barrier(2, timeout=20)
    both_generated = threading.Barrier(2, timeout=20)
    real_generate = pgp.generate

    generated: list[str] = []

    def generate(address: str, now: dt.datetime) -> pgp.SecretKey:
        key = real_generate(address, now)
        generated.append(key.fingerprint)
        if postgres:
            both_generated.wait()
        return key

    monkeypatch.setattr(pgp, "generate", generate)
    results: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            start.wait()
            with runtime.sessions.begin() as session:
                row = store.get_or_create(session, ring, ALICE, NOW, events=audit_sink)
                # The caller's transaction survives a lost race and can go on working.
                session.execute(sa.select(1))
                results.append(row.fingerprint)
        except Exception as exc:  # noqa: BLE001  (reported by the main thread)
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(results) == 2 and results[0] == results[1]
    # On PostgreSQL both made a key and raced on the insert; the loser's key is gone.
    assert len(generated) == (2 if postgres else 1)
    assert results[0] in generated
    with runtime.sessions() as session:
        rows = session.scalars(sa.select(StoredKey).where(StoredKey.address == ALICE)).all()
    assert [r.fingerprint for r in rows] == [results[0]]
    assert len(_events(runtime.sessions, "key.create")) == 1


def test_rotation_keeps_old_mail_readable_and_encrypts_new_mail_to_the_new_key(
    sessions: Sessions, ring: MasterKeyRing
) -> None:
    old = _create(sessions, ring)
    with sessions.begin() as session:
        old_mail = encrypt(b"before", [store.public_key(session, ALICE)])
        new = store.rotate(session, ring, ALICE, NOW, events=audit_sink)
    assert new.fingerprint != old.fingerprint
    with sessions.begin() as session:
        current = store.public_key(session, ALICE)
        assert current is not None and current.fingerprint == new.fingerprint
        new_mail = encrypt(b"after", [current])
        assert packets.recipient_key_ids(new_mail) == {new.subkey_id}
        assert packets.recipient_key_ids(old_mail) == {old.subkey_id}
        assert store.decrypt_for(session, ring, ALICE, old_mail).data == b"before"
        assert store.decrypt_for(session, ring, ALICE, new_mail).data == b"after"
        statuses = {r.fingerprint: r.status for r in store.keys_of(session, ALICE)}
    assert statuses == {old.fingerprint: "retired", new.fingerprint: "active"}
    [event] = _events(sessions, "key.rotate")
    assert event.detail == f"{old.fingerprint} -> {new.fingerprint}"


def test_revocation_signs_the_old_key_and_rotates(sessions: Sessions, ring: MasterKeyRing) -> None:
    old = _create(sessions, ring)
    with sessions.begin() as session:
        old_mail = encrypt(b"older", [store.public_key(session, ALICE)])
        new = store.revoke(session, ring, ALICE, "laptop stolen", NOW, events=audit_sink)
    with sessions.begin() as session:
        rows = {r.fingerprint: r for r in store.keys_of(session, ALICE)}
        revoked = store.parsed_public_key(rows[old.fingerprint])
        assert revoked.is_revoked
        assert pgp.revocation_reasons(revoked) == ["laptop stolen"]
        assert rows[old.fingerprint].status == "revoked"
        assert rows[old.fingerprint].revocation_reason == "compromised: laptop stolen"
        assert not store.public_key(session, ALICE).is_revoked  # type: ignore[union-attr]
        assert store.public_key(session, ALICE).fingerprint == new.fingerprint  # type: ignore[union-attr]
        # Revoked means "do not encrypt to it any more", not "forget old mail".
        assert store.decrypt_for(session, ring, ALICE, old_mail).data == b"older"
        exported = store.export_public(session, ALICE)
    assert exported.count("BEGIN PGP PUBLIC KEY BLOCK") == 2
    [event] = _events(sessions, "key.revoke")
    assert "laptop stolen" in event.detail and old.fingerprint in event.detail


@pytest.mark.parametrize("reason", ["", " ", "x" * 201, "line\nbreak"])
def test_revocation_reason_is_checked(sessions: Sessions, ring: MasterKeyRing, reason: str) -> None:
    _create(sessions, ring)
    with pytest.raises(store.KeystoreError), sessions.begin() as session:
        store.revoke(session, ring, ALICE, reason, NOW, events=audit_sink)


def test_rotating_an_address_without_a_key_is_a_clear_error(
    sessions: Sessions, ring: MasterKeyRing
) -> None:
    with pytest.raises(store.NoKeyError, match="has no key"), sessions.begin() as session:
        store.rotate(session, ring, "nobody@example.test", NOW, events=audit_sink)
    with (
        pytest.raises(store.KeystoreError, match="not a valid mail address"),
        sessions.begin() as session,
    ):
        store.rotate(session, ring, "no-at-sign", NOW, events=audit_sink)


def test_unlock_picks_the_key_by_key_id(sessions: Sessions, ring: MasterKeyRing) -> None:
    old = _create(sessions, ring)
    with sessions.begin() as session:
        new = store.rotate(session, ring, ALICE, NOW, events=audit_sink)
    with sessions.begin() as session:
        assert store.unlock(session, ring, ALICE, old.subkey_id).fingerprint == old.fingerprint
        assert store.unlock(session, ring, ALICE, new.key_id.lower()).fingerprint == new.fingerprint
        assert store.unlock(session, ring, ALICE, "0x" + new.subkey_id).fingerprint == (
            new.fingerprint
        )
        with pytest.raises(store.NoKeyError):
            store.unlock(session, ring, ALICE, "0123456789ABCDEF")
        with pytest.raises(store.NoKeyError):  # Bob cannot unlock Alice's key
            store.unlock(session, ring, BOB, old.subkey_id)
        with pytest.raises(store.KeystoreError):
            store.unlock(session, ring, ALICE, "not-a-key-id")
        keys = store.secret_keys_for_decryption(session, ring, ALICE)
    assert [k.fingerprint for k in keys] == [new.fingerprint, old.fingerprint]


def test_public_keys_are_parsed_once_per_process(
    sessions: Sessions, ring: MasterKeyRing, monkeypatch: pytest.MonkeyPatch
) -> None:
    _create(sessions, ring)
    parses: list[int] = []
    real_parse = pgp.parse_public_key

    def counting_parse(data: Any) -> pgp.PublicKey:
        parses.append(1)
        return real_parse(data)

    monkeypatch.setattr(pgp, "parse_public_key", counting_parse)
    with sessions() as session:
        first = store.public_key(session, ALICE)
        for _ in range(20):
            assert store.public_key(session, ALICE) is first
    assert len(parses) == 1
    with sessions.begin() as session:
        new = store.rotate(session, ring, ALICE, NOW, events=audit_sink)
    with sessions() as session:
        after = store.public_key(session, ALICE)
        assert after is not None and after.fingerprint == new.fingerprint
        assert store.public_key(session, ALICE) is after
        assert store.public_key(session, BOB) is None
    assert len(parses) == 2


def test_cache_follows_a_rotation_made_by_another_process(
    sessions: Sessions, ring: MasterKeyRing, test_env: dict[str, str]
) -> None:
    old = _create(sessions, ring)
    with sessions() as session:
        assert store.public_key(session, ALICE).fingerprint == old.fingerprint  # type: ignore[union-attr]
    result = run_sealgate(test_env, "keys", "rotate", ALICE)
    assert result.returncode == 0, result.stderr
    with sessions() as session:
        current = store.current_key(session, ALICE)
        assert current is not None and current.fingerprint != old.fingerprint
        assert current.fingerprint in result.stdout
        assert store.public_key(session, ALICE).fingerprint == current.fingerprint  # type: ignore[union-attr]


def test_secrets_do_not_print_or_pickle(sessions: Sessions, ring: MasterKeyRing) -> None:
    row = _create(sessions, ring)
    with sessions() as session:
        secret = store.unlock(session, ring, ALICE, row.key_id)
        stored = session.get(StoredKey, row.id)
        assert stored is not None
        text = repr(secret) + str(secret) + repr(stored) + repr(ring)
    assert row.fingerprint in repr(secret)
    assert "PRIVATE" not in text and "wrapped" not in text
    for key in ring.keys.values():
        assert key.hex() not in text
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    with pytest.raises(TypeError):
        pickle.dumps(ring)


def test_a_stale_ring_cannot_wrap_under_a_retired_version(
    sessions: Sessions, ring: MasterKeyRing
) -> None:
    _create(sessions, ring)
    with sessions.begin() as session:
        version = session.get(MasterKeyVersion, ring.primary)
        assert version is not None
        version.state = "retired"
    with pytest.raises(MasterKeyError, match="reload"), sessions.begin() as session:
        store.get_or_create(session, ring, BOB, NOW, events=audit_sink)
    with sessions() as session:
        assert store.current_key(session, BOB) is None


def test_malformed_messages_are_clear_errors(sessions: Sessions, ring: MasterKeyRing) -> None:
    _create(sessions, ring)
    with sessions() as session:
        for junk in (b"", b"\x00\x01\x02", b"-----BEGIN PGP MESSAGE-----\n\nabc\n", b"\xc1" * 50):
            with pytest.raises(pgp.PgpError):
                store.decrypt_for(session, ring, ALICE, junk)
        to_someone_else = encrypt(b"x", [pgp.generate(BOB, NOW).public])
        with pytest.raises(pgp.PgpError, match="not encrypted to a key of"):
            store.decrypt_for(session, ring, ALICE, to_someone_else)
