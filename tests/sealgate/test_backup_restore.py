"""`sealgate backup` → wipe → `sealgate restore`: every message, key and secure page opens
afterwards (must show 4), on SQLite and on PostgreSQL; a backup taken before a master-key
rotation still opens after it (the retired version stays, decrypt-only), and stops
opening only once the version is destroyed, which restore then says before it changes
anything. A damaged backup is refused."""

from __future__ import annotations

import email.policy
import hashlib
import smtplib
import ssl
from email.message import EmailMessage
from pathlib import Path

import sqlalchemy as sa

from gateway import db, queue
from gateway.dkim import keys as dkim_keys
from gateway.models import DkimKey, MailboxMessage, QueueItem
from gateway.runtime import Runtime
from gateway.securepage import sent_copy
from gateway.settings import SETTINGS_FILE, Settings
from gateway.smtp_server import SubmissionServer
from keystore import store
from keystore.masterkey import MasterKeyRing, load_ring, ring_path, save_ring
from keystore.models import StoredKey
from tests.conftest import TEST_DATABASE_URL, reset_database
from tests.gateway.test_secure_page import decrypt_as, open_sent_copy, open_with, token_of
from tests.keystore.conftest import run_sealgate

ALICE, BOB, CAROL = "alice@example.test", "bob@example.test", "carol@elsewhere.example"
PASSWORD = "correct horse battery"


def send(server: SubmissionServer, ctx: ssl.SSLContext, pw: str, to: str, subject: str) -> None:
    msg = EmailMessage()
    msg["From"] = ALICE
    msg["To"] = to
    msg["Subject"] = subject
    msg["X-Sealgate-Encrypt"] = "yes"
    msg["X-Sealgate-Password"] = PASSWORD
    msg.set_content(f"The body of {subject}, for {to} only.\n")
    with smtplib.SMTP_SSL("127.0.0.1", server.tls_port, context=ctx, timeout=60) as client:
        client.login(ALICE, pw)
        assert client.sendmail(ALICE, [to], msg.as_bytes(policy=email.policy.SMTP)) == {}


def everything_opens(runtime: Runtime) -> dict[str, str]:
    """Open every stored message, secret key, DKIM key and secure page; digests of what
    came out, so two states can be compared. Anything that does not open fails here."""
    ring = runtime.ring.get()
    opened: dict[str, str] = {}
    with db.read_only(runtime.sessions) as session:
        messages = list(session.scalars(sa.select(MailboxMessage).order_by(MailboxMessage.id)))
        owners = {m.id: m.address.address for m in messages}
        keys = list(session.scalars(sa.select(StoredKey).options(sa.orm.undefer("*"))))
        dkim = list(session.scalars(sa.select(DkimKey).options(sa.orm.undefer("*"))))
        domains = {row.id: row.domain.name for row in dkim}
        queued = list(session.scalars(sa.select(QueueItem).order_by(QueueItem.id)))
    assert messages and keys and dkim and queued
    for message in messages:
        if sent_copy.blob_of(message.raw) is not None:
            plain = open_sent_copy(runtime, message, PASSWORD)
        elif message.encrypted:
            plain = decrypt_as(runtime, owners[message.id], message.raw)
        else:
            plain = message.raw
        opened[f"message {message.id}"] = hashlib.sha256(plain).hexdigest()
    for key in keys:
        assert store.unlock_row(ring, key).fingerprint == key.fingerprint
        opened[f"key {key.fingerprint}"] = "opens"
    for row in dkim:
        opened[f"dkim {row.selector}"] = hashlib.sha256(
            dkim_keys.open_key(ring, row, domains[row.id]).private
        ).hexdigest()
    for item in queued:
        raw = queue.open_raw(ring, item)  # sealed at rest under the master key
        if item.sealed:
            page = open_with(runtime, token_of(raw), PASSWORD)
            assert page is not None and b"for carol@elsewhere.example only" in page
            opened[f"secure page for {item.rcpt_to}"] = hashlib.sha256(page).hexdigest()
    return opened


def wipe(runtime: Runtime, settings: Settings, *, ring_too: bool) -> None:
    runtime.engine.dispose()
    if TEST_DATABASE_URL:
        reset_database(TEST_DATABASE_URL)
    else:
        for suffix in ("", "-wal", "-shm"):
            (settings.data_dir / f"sealgate.db{suffix}").unlink(missing_ok=True)
    if ring_too:
        ring_path(settings.data_dir).unlink()


def test_backup_wipe_restore_and_a_backup_from_before_a_rotation(
    runtime: Runtime,
    settings: Settings,
    mail_users: dict[str, str],
    submission_server: SubmissionServer,
    client_ssl_context: ssl.SSLContext,
    test_env: dict[str, str],
    tmp_path: Path,
) -> None:
    send(submission_server, client_ssl_context, mail_users[ALICE], BOB, "for bob")
    send(submission_server, client_ssl_context, mail_users[ALICE], CAROL, "for carol")
    before = everything_opens(runtime)
    assert any(k.startswith("secure page") for k in before)

    # 1. Backup (with the ring), wipe database and ring, restore: all of it opens again.
    full = tmp_path / "backup-full"
    made = run_sealgate(test_env, "backup", str(full))
    assert made.returncode == 0, made.stderr
    stored = sum(1 for name in before if name.startswith("message "))
    assert f"{stored} mailbox messages" in made.stdout
    assert "master-key version(s) 1" in made.stdout
    assert "database" in made.stdout + made.stderr  # the progress bar's label
    assert sorted(p.name for p in full.iterdir()) == sorted(
        ["manifest.json", "master.keys", "database.pgdump" if TEST_DATABASE_URL else "sealgate.db"]
    )
    assert all(p.stat().st_mode & 0o077 == 0 for p in full.iterdir() if p.name != "manifest.json")
    wipe(runtime, settings, ring_too=True)
    restored = run_sealgate(test_env, "restore", str(full))
    assert restored.returncode == 0, restored.stderr
    assert "master key ring: version(s) 1 (written to master.keys)" in restored.stdout
    assert everything_opens(runtime) == before

    # Restoring over a live installation needs --force.
    again = run_sealgate(test_env, "restore", str(full))
    assert again.returncode == 1 and "--force" in again.stderr

    # 2. A backup kept apart from its ring, then a master-key rotation.
    old = tmp_path / "backup-before-rotation"
    assert run_sealgate(test_env, "backup", "--without-master-keys", str(old)).returncode == 0
    rotated = run_sealgate(test_env, "keys", "rotate-master")
    assert rotated.returncode == 0, rotated.stderr
    ring = load_ring(settings.data_dir, env={})
    assert (ring.primary, ring.decrypt_only_versions) == (2, [1])
    # Wipe the database only; the ring on disk is the rotated one. The old backup's data
    # is all under version 1, which that ring keeps decrypt-only: it opens.
    wipe(runtime, settings, ring_too=False)
    restored = run_sealgate(test_env, "restore", str(old))
    assert restored.returncode == 0, restored.stderr
    assert "version(s) 1, 2 (unchanged)" in restored.stdout
    with db.read_only(runtime.sessions) as session:
        assert set(session.scalars(sa.select(StoredKey.master_version))) == {1}
    assert everything_opens(runtime) == before

    # 3. Once version 1 is destroyed the old backup cannot open; restore says so and
    #    leaves the installation as it was. The restored data is all under version 1,
    #    so destroying it is refused until a rotation has moved that data.
    refused = run_sealgate(test_env, "keys", "destroy-master", "1", "--yes")
    assert refused.returncode == 1 and "pass --force" in refused.stderr
    assert run_sealgate(test_env, "keys", "rotate-master").returncode == 0
    destroyed = run_sealgate(test_env, "keys", "destroy-master", "1", "--yes")
    assert destroyed.returncode == 0, destroyed.stderr
    assert everything_opens(runtime) == before  # nothing of the live data was under it
    refused = run_sealgate(test_env, "restore", "--force", str(old))
    assert refused.returncode == 1
    assert "master-key version(s) 1" in refused.stderr and "destroyed" in refused.stderr
    assert "nothing was changed" in refused.stderr


def test_a_damaged_backup_is_refused_before_anything_changes(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str], tmp_path: Path
) -> None:
    target = tmp_path / "backup"
    assert run_sealgate(test_env, "backup", str(target)).returncode == 0
    dump = next(p for p in target.iterdir() if p.name.startswith(("sealgate.db", "database")))
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))
    refused = run_sealgate(test_env, "restore", "--force", str(target))
    assert refused.returncode == 1
    assert f"{dump.name} does not match its checksum" in refused.stderr
    assert "Traceback" not in refused.stderr
    # Not a backup at all, or a non-empty target for a new backup: clear errors too.
    assert "not a sealgate backup" in run_sealgate(test_env, "restore", str(tmp_path)).stderr
    assert "not an empty directory" in run_sealgate(test_env, "backup", str(target)).stderr


def test_a_ring_that_does_not_open_the_backup_is_refused_before_anything_changes(
    runtime: Runtime,
    settings: Settings,
    mail_users: dict[str, str],
    test_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """A backup made --without-master-keys, restored onto the ring a fresh `sealgate init`
    writes: the same version number 1, another key. Restore compared only the version
    numbers, said "(unchanged)" and loaded keys nothing could open."""
    target = tmp_path / "backup"
    made = run_sealgate(test_env, "backup", "--without-master-keys", str(target))
    assert made.returncode == 0, made.stderr
    right = ring_path(settings.data_dir).read_bytes()
    # The live database moves on after the backup, so a restore would be visible.
    assert run_sealgate(test_env, "keys", "rotate", ALICE).returncode == 0

    def live_keys() -> set[str]:
        runtime.engine.dispose()  # a restore replaces the SQLite file under the pool
        with db.read_only(runtime.sessions) as session:
            return set(session.scalars(sa.select(StoredKey.fingerprint)))

    before = live_keys()
    other = MasterKeyRing.generate()  # what init on another machine writes
    save_ring(settings.data_dir, other)
    refused = run_sealgate(test_env, "restore", "--force", str(target))
    assert refused.returncode == 1
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith(f"Error: the master key ring ({ring_path(settings.data_dir)})")
    assert "does not open the keys the backup's database holds under its version 1" in line
    assert "nothing was changed" in line and "Traceback" not in refused.stderr
    assert live_keys() == before
    assert ring_path(settings.data_dir).read_text() == other.to_json()
    assert not (settings.data_dir / SETTINGS_FILE).exists()

    # The same ring from the environment: refused too, naming where it came from.
    env = {**test_env, "SEALGATE_MASTER_KEYS": other.to_json()}
    refused = run_sealgate(env, "restore", "--force", str(target))
    assert refused.returncode == 1 and "($SEALGATE_MASTER_KEYS)" in refused.stderr
    assert live_keys() == before

    # With the installation's own ring back in place, the same backup restores.
    ring_path(settings.data_dir).write_bytes(right)
    restored = run_sealgate(test_env, "restore", "--force", str(target))
    assert restored.returncode == 0, restored.stderr
    assert "version(s) 1 (unchanged)" in restored.stdout
    assert live_keys() < before
