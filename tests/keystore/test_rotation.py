"""Key rotation without losing mail or stopping the service.

- `sealgate keys rotate`: mail encrypted to the old key still decrypts, new mail
  goes to the new key.
- `sealgate keys rotate-master` is SIGKILLed half-way (after two committed batches,
  held at a known point, then killed from outside); while it is stopped, a process
  holding the old ring keeps decrypting and even makes a new key; running the
  command again finishes: every key opens under the new version and the old
  version is retired, kept decrypt-only in the ring (a blob restored from an old
  backup still opens).
- `sealgate keys destroy-master` lists what becomes unreadable, asks, and forgets
  the version: then a blob under it is refused, also when restored into its row.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway.models import AuditEvent
from gateway.runtime import Runtime
from gateway.settings import Settings
from keystore import packets, rotation, store, wrap
from keystore.masterkey import MasterKeyError, MasterKeyRing, RingFile, load_ring
from keystore.models import MasterKeyVersion, StoredKey
from tests.keystore.conftest import audit_sink, run_sealgate
from tests.openpgp import encrypt

NOW = dt.datetime(2026, 5, 4, 8, 30, tzinfo=dt.UTC)
ALICE = "alice@example.test"
Sessions = so.sessionmaker[so.Session]

# Runs the real CLI, but holds it for good at the start of batch number
# `stop_at` (0-based): batches before it are committed, nothing after has begun.
HELD_ROTATION = """
import sys, threading
from pathlib import Path
import keystore.rotation as rotation

marker, stop_at = Path(sys.argv[1]), int(sys.argv[2])
real = rotation.rewrap_batch
calls = []

def held(session, ring, batch_size, now):
    if len(calls) == stop_at:
        marker.write_text(str(len(calls)))
        threading.Event().wait()
    calls.append(1)
    return real(session, ring, batch_size, now)

rotation.rewrap_batch = held
from sealgate.cli import main
sys.argv = ["sealgate", "keys", "rotate-master", "--batch-size", "3"]
main()
"""


def _versions(sessions: Sessions) -> dict[str, int]:
    with sessions() as session:
        return dict(session.execute(sa.select(StoredKey.address, StoredKey.master_version)).all())  # type: ignore[arg-type]


def _audit(sessions: Sessions, prefix: str) -> list[AuditEvent]:
    with sessions() as session:
        return list(
            session.scalars(
                sa.select(AuditEvent)
                .where(AuditEvent.action.startswith(prefix))
                .order_by(AuditEvent.id)
            )
        )


def test_keys_rotate_old_mail_still_decrypts_new_mail_goes_to_the_new_key(
    sessions: Sessions, ring: MasterKeyRing, test_env: dict[str, str], mail_users: dict[str, str]
) -> None:
    with sessions.begin() as session:
        old = store.get_or_create(session, ring, ALICE, NOW, events=audit_sink)
        old_public = store.public_key(session, ALICE)
        assert old_public is not None
        old_mail = encrypt(b"sent before the rotation", [old_public])

    result = run_sealgate(test_env, "keys", "rotate", ALICE)
    assert result.returncode == 0, result.stderr

    with sessions() as session:
        new_public = store.public_key(session, ALICE)
        assert new_public is not None and new_public.fingerprint != old.fingerprint
        assert new_public.fingerprint in result.stdout
        new_mail = encrypt(b"sent after the rotation", [new_public])
        assert packets.recipient_key_ids(new_mail) == set(new_public.subkey_ids)
        assert store.decrypt_for(session, ring, ALICE, old_mail).data == b"sent before the rotation"
        assert store.decrypt_for(session, ring, ALICE, new_mail).data == b"sent after the rotation"
        old_row = session.scalar(
            sa.select(StoredKey).where(StoredKey.fingerprint == old.fingerprint)
        )
        assert old_row is not None and old_row.status == "retired"
    [event] = _audit(sessions, "key.rotate")
    assert (event.actor, event.target) == ("cli", ALICE)


def test_rotate_master_killed_half_way_and_run_again_finishes(
    sessions: Sessions,
    ring: MasterKeyRing,
    settings: Settings,
    test_env: dict[str, str],
    tmp_path: Path,
) -> None:
    addresses = [f"user{i}@example.test" for i in range(9)]
    mail: dict[str, str] = {}
    with sessions.begin() as session:
        for address in addresses:
            store.get_or_create(session, ring, address, NOW, events=audit_sink)
            public = store.public_key(session, address)
            assert public is not None
            mail[address] = encrypt(address.encode(), [public])
        first_blob = session.scalar(
            sa.select(StoredKey.wrapped_secret).where(StoredKey.address == addresses[0])
        )
    old_ring = ring  # what a running gateway holds in memory

    marker = tmp_path / "held"
    held = subprocess.Popen(
        [sys.executable, "-c", HELD_ROTATION, str(marker), "2"],
        env={**os.environ, **test_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert held.poll() is None, held.communicate()
            assert time.monotonic() < deadline, "the rotation never reached its third batch"
            time.sleep(0.05)

        # Half-way: two batches of three committed under version 2, three keys left.
        versions = _versions(sessions)
        assert sorted(versions.values()) == [1, 1, 1, 2, 2, 2, 2, 2, 2]
        mid_ring = load_ring(settings.data_dir, env={})
        assert (mid_ring.primary, mid_ring.active_versions) == (2, [1, 2])

        # Mail keeps flowing meanwhile. A process with the old ring opens keys not yet
        # moved and makes a new key under version 1 (still active); one that re-reads
        # the ring file opens the moved ones.
        ring_file = RingFile(settings.data_dir, env={})
        with sessions.begin() as session:
            for address in addresses:
                use = old_ring if versions[address] == 1 else ring_file.get()
                opened = store.decrypt_for(session, use, address, mail[address])
                assert opened.data == address.encode()
            late = store.get_or_create(
                session, old_ring, "late@example.test", NOW, events=audit_sink
            )
            assert late.master_version == 1
    finally:
        held.send_signal(signal.SIGKILL)
        held_out, held_err = held.communicate(timeout=30)
    assert held.returncode == -signal.SIGKILL
    assert b"9 secret keys to re-wrap from version 1" in held_out
    assert b"re-wrapping" in held_out + held_err  # the progress bar

    assert sorted(_versions(sessions).values()).count(1) == 4  # nothing finished it for us
    assert not load_ring(settings.data_dir, env={}).retired

    again = run_sealgate(test_env, "keys", "rotate-master", "--batch-size", "3")
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stdout
    assert "version 1 retired" in again.stdout

    final = load_ring(settings.data_dir, env={})
    assert final.primary == 2
    assert final.retired == {1}
    assert final.decrypt_only_versions == [1]  # kept, so old backups still open
    assert set(_versions(sessions).values()) == {2}
    with sessions() as session:
        for address in addresses:
            assert (
                store.decrypt_for(session, final, address, mail[address]).data == address.encode()
            )
        for row in store.list_keys(session):
            assert store.unlock_row(final, row).fingerprint == row.fingerprint
        version_row = session.get(MasterKeyVersion, 1)
        assert version_row is not None and version_row.state == "retired"

    # A blob under the retired version, restored into its row (an old backup), opens.
    assert first_blob is not None and wrap.blob_version(first_blob) == 1
    with sessions.begin() as session:
        row = store.current_key(session, addresses[0])
        assert row is not None
        row.wrapped_secret, row.master_version = first_blob, 1
    with sessions() as session:
        row = store.current_key(session, addresses[0])
        assert row is not None
        assert store.unlock_row(final, row).fingerprint == row.fingerprint

    # Destroying it is a separate command: it lists what dies with it and asks first.
    declined = run_sealgate(test_env, "keys", "destroy-master", "1", "--force", input="n\n")
    assert declined.returncode == 1
    assert "1 secret keys of hosted addresses in the database" in declined.stdout
    assert "every backup made before" in declined.stdout
    assert load_ring(settings.data_dir, env={}).decrypt_only_versions == [1]
    assert run_sealgate(test_env, "keys", "destroy-master", "2").returncode == 1  # primary
    # Version 1 still wraps that key: refused without --force (and asked with it).
    refused = run_sealgate(test_env, "keys", "destroy-master", "1", input="y\n")
    assert refused.returncode == 1 and "pass --force" in refused.stderr
    assert load_ring(settings.data_dir, env={}).decrypt_only_versions == [1]
    destroyed = run_sealgate(test_env, "keys", "destroy-master", "1", "--force", input="y\n")
    assert destroyed.returncode == 0, destroyed.stderr
    final = load_ring(settings.data_dir, env={})
    assert final.destroyed_versions == [1] and 1 not in final.keys
    with pytest.raises(wrap.DecryptionError):
        wrap.unwrap(
            final, first_blob, address=addresses[0], fingerprint=_fp(sessions, addresses[0])
        )
    with sessions() as session:
        row = store.current_key(session, addresses[0])
        assert row is not None
        with pytest.raises(wrap.DecryptionError):
            store.unlock_row(final, row)
    # The process that never re-read the ring can no longer wrap under version 1.
    with pytest.raises(MasterKeyError, match="retired"), sessions.begin() as session:
        store.get_or_create(session, old_ring, "later@example.test", NOW, events=audit_sink)

    events = [(e.action, e.actor) for e in _audit(sessions, "master.")]
    assert events == [
        ("master.rotate", "cli"),
        ("master.resume", "cli"),
        ("master.retire", "cli"),
        ("master.destroy", "cli"),
    ]
    assert all(e.at is not None for e in _audit(sessions, "master."))


def _fp(sessions: Sessions, address: str) -> str:
    with sessions() as session:
        row = store.current_key(session, address)
        assert row is not None
        return row.fingerprint


def test_rotate_master_twice_and_with_no_keys(
    sessions: Sessions, settings: Settings, test_env: dict[str, str]
) -> None:
    for expected in (2, 3):
        result = run_sealgate(test_env, "keys", "rotate-master")
        assert result.returncode == 0, result.stderr
        assert f"wrapped under version {expected}" in result.stdout
    final = load_ring(settings.data_dir, env={})
    assert (final.primary, final.retired, sorted(final.keys)) == (3, {1, 2}, [1, 2, 3])


def test_rotate_master_refuses_a_ring_from_the_environment(
    runtime: object, settings: Settings, test_env: dict[str, str]
) -> None:
    ring_json = load_ring(settings.data_dir, env={}).to_json()
    result = run_sealgate({**test_env, "SEALGATE_MASTER_KEYS": ring_json}, "keys", "rotate-master")
    assert result.returncode == 1
    assert "SEALGATE_MASTER_KEYS" in result.stderr
    assert "Traceback" not in result.stderr
    assert ring_json not in result.stderr + result.stdout


def test_rotation_stops_on_a_blob_it_cannot_open(
    sessions: Sessions, ring: MasterKeyRing, settings: Settings
) -> None:
    with sessions.begin() as session:
        row = store.get_or_create(session, ring, ALICE, NOW, events=audit_sink)
        row.wrapped_secret = row.wrapped_secret[:-1] + bytes([row.wrapped_secret[-1] ^ 1])
    with pytest.raises(rotation.RotationError, match="cannot be opened") as info:
        rotation.rotate_master(settings.data_dir, sessions, NOW, events=audit_sink)
    assert row.fingerprint in str(info.value)
    # Nothing retired: the old version is still there to investigate with.
    assert load_ring(settings.data_dir, env={}).active_versions == [1, 2]


def test_retirement_waits_for_a_stale_writer_and_sees_its_blob(
    runtime: Runtime, ring: MasterKeyRing
) -> None:
    """No orphan: a key wrapped under the old version by a process with the old ring
    is either seen by the retirement check (which then does not retire) or refused.

    The writer's transaction is held open after wrapping; the retirement must wait
    for it (on PostgreSQL we watch it wait on the row lock; SQLite serialises the
    two at BEGIN IMMEDIATE), and then find the blob.
    """
    sessions = runtime.sessions
    with sessions.begin() as session:
        store.get_or_create(session, ring, ALICE, NOW, events=audit_sink)
    wrapped = threading.Event()
    release = threading.Event()
    outcome: list[str] = []
    retired: list[bool] = []

    def stale_writer() -> None:
        with sessions.begin() as session:
            store.get_or_create(session, ring, "stale@example.test", NOW, events=audit_sink)
            wrapped.set()
            release.wait(60)
        outcome.append("committed")

    def retire() -> None:
        retired.append(rotation.try_retire(sessions, 1, NOW, audit_sink))

    writer = threading.Thread(target=stale_writer)
    writer.start()
    assert wrapped.wait(60)
    retirer = threading.Thread(target=retire)
    retirer.start()
    if runtime.engine.dialect.name == "postgresql":
        _wait_for_a_lock_wait(runtime.engine)
    assert retired == []
    release.set()
    writer.join(60)
    retirer.join(60)
    assert outcome == ["committed"]
    assert retired == [False]
    with sessions() as session:
        version = session.get(MasterKeyVersion, 1)
        assert version is not None and version.state == "active"

    # Once the blobs have moved, retirement succeeds and the stale writer is refused.
    moved = ring.with_new_primary()
    with sessions.begin() as session:
        assert rotation.rewrap_batch(session, moved, 100, NOW) == 2
    assert rotation.try_retire(sessions, 1, NOW, audit_sink)
    with pytest.raises(MasterKeyError), sessions.begin() as session:
        store.get_or_create(session, ring, "staler@example.test", NOW, events=audit_sink)


def _wait_for_a_lock_wait(engine: sa.Engine) -> None:
    deadline = time.monotonic() + 60
    with engine.connect() as conn:
        while True:
            waiting = conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar()
            conn.rollback()
            if waiting:
                return
            assert time.monotonic() < deadline, "the retirement never waited for the writer"
            time.sleep(0.02)
