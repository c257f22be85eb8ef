"""A new admin's mistakes with backup, restore, the master key and purge, and what the
commands must answer: one line naming the problem (no traceback), nothing changed,
and an audit entry for every action that did something.

Each of these held when it was tried (2026-12-06); these tests keep it so.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from gateway.settings import Settings
from keystore.masterkey import ring_path
from tests.keystore.conftest import run_sealgate

ALICE = "alice@example.test"


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1
    assert "Traceback" not in done.stderr, done.stderr
    [line] = [x for x in done.stderr.splitlines() if x.startswith("Error:")]
    return line


def users(test_env: dict[str, str]) -> str:
    listed = run_sealgate(test_env, "user", "list")
    assert listed.returncode == 0, listed.stderr
    return listed.stdout


@pytest.mark.usefixtures("mail_users")
def test_restore_over_a_live_installation_needs_force(
    test_env: dict[str, str], tmp_path: Path
) -> None:
    backup = tmp_path / "backup"
    assert run_sealgate(test_env, "backup", str(backup)).returncode == 0
    before = users(test_env)
    line = one_error_line(run_sealgate(test_env, "restore", str(backup)))
    assert "already holds a sealgate installation" in line and "--force" in line
    assert users(test_env) == before


def _rechecksum(backup: Path, name: str) -> None:
    manifest = json.loads((backup / "manifest.json").read_text())
    data = (backup / name).read_bytes()
    manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    (backup / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.usefixtures("mail_users")
@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("truncated-manifest", "manifest.json is not valid JSON"),
        ("truncated-database", "does not match its checksum: the backup is damaged"),
        ("garbage-ring", "the master key ring is malformed"),
        ("missing-database", "is missing from the backup"),
        ("newer-format", "unknown backup format 2"),
    ],
)
def test_a_truncated_or_tampered_backup_is_refused_by_name(
    test_env: dict[str, str], tmp_path: Path, damage: str, expected: str
) -> None:
    backup = tmp_path / "backup"
    assert run_sealgate(test_env, "backup", str(backup)).returncode == 0
    dump = next(p for p in backup.iterdir() if p.name in ("sealgate.db", "database.pgdump"))
    if damage == "truncated-manifest":
        text = (backup / "manifest.json").read_text()
        (backup / "manifest.json").write_text(text[: len(text) // 2])
    elif damage == "truncated-database":
        dump.write_bytes(dump.read_bytes()[:1000])
    elif damage == "garbage-ring":
        (backup / "master.keys").write_text('{"primary": 1}\n')
        _rechecksum(backup, "master.keys")
    elif damage == "missing-database":
        dump.unlink()
    else:
        manifest = json.loads((backup / "manifest.json").read_text())
        (backup / "manifest.json").write_text(json.dumps({**manifest, "format": 2}))
    before = users(test_env)
    line = one_error_line(run_sealgate(test_env, "restore", "--force", str(backup)))
    assert expected in line
    assert users(test_env) == before


@pytest.mark.usefixtures("mail_users")
def test_rotate_master_with_a_ring_file_in_a_bad_state_says_which(
    test_env: dict[str, str], settings: Settings
) -> None:
    path = ring_path(settings.data_dir)
    good = path.read_bytes()
    path.chmod(0o644)
    assert "readable by others (mode 644)" in one_error_line(
        run_sealgate(test_env, "keys", "rotate-master")
    )
    path.chmod(0o600)
    path.write_text("not json\n")
    assert "the master key ring is malformed" in one_error_line(
        run_sealgate(test_env, "keys", "rotate-master")
    )
    path.unlink()
    assert "does not exist" in one_error_line(run_sealgate(test_env, "keys", "rotate-master"))
    path.write_bytes(good)
    path.chmod(0o600)
    assert "it is the primary version" in one_error_line(
        run_sealgate(test_env, "keys", "destroy-master", "1", "--yes")
    )
    assert "the ring has no such version" in one_error_line(
        run_sealgate(test_env, "keys", "destroy-master", "7", "--yes")
    )
    assert path.read_bytes() == good


@pytest.mark.usefixtures("mail_users")
def test_admin_actions_are_audited_and_long_work_shows_progress(
    test_env: dict[str, str], tmp_path: Path
) -> None:
    backup = tmp_path / "backup"
    made = run_sealgate(test_env, "backup", str(backup))
    assert made.returncode == 0 and "checksums" in made.stdout + made.stderr
    restored = run_sealgate(test_env, "restore", "--force", str(backup))
    assert restored.returncode == 0, restored.stderr
    rotated = run_sealgate(test_env, "keys", "rotate-master")
    assert rotated.returncode == 0 and "re-wrapping" in rotated.stdout + rotated.stderr
    purged = run_sealgate(test_env, "purge")
    assert purged.returncode == 0 and "purging secure pages" in purged.stdout + purged.stderr
    listed = run_sealgate(test_env, "audit", "list")
    assert listed.returncode == 0, listed.stderr
    actions = {line.split("\t")[2] for line in listed.stdout.splitlines() if "\t" in line}
    # The restore replaced the log with the backup's, so backup.make is not in it
    # (it is recorded after the copy); the restore is, and all that came after.
    assert {"backup.restore", "master.rotate", "master.retire", "securepage.purge.run"} <= (actions)
