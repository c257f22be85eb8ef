"""`sealgate init` with the master key ring file lost does not write a fresh one over
a database whose records need the lost ring.

Threat: init saw no `master.keys` and wrote a new ring. Every secret key, DKIM key
and TOTP secret in the database stayed wrapped under the lost ring's versions, and
the new ring's version 1 (another key) hid the loss: `serve` then failed much later
with "does not open", and any key made meanwhile was wrapped under the wrong ring.
"""

from __future__ import annotations

from pathlib import Path

from gateway.runtime import Runtime
from gateway.settings import Settings
from keystore.masterkey import ring_path
from tests.conftest import TEST_DATABASE_URL, reset_database
from tests.keystore.conftest import run_sealgate


def test_init_refuses_a_fresh_ring_for_records_under_a_lost_one(
    runtime: Runtime, settings: Settings, mail_users: dict[str, str], test_env: dict[str, str]
) -> None:
    ring = ring_path(settings.data_dir)
    kept = ring.read_bytes()
    ring.unlink()  # lost

    refused = run_sealgate(test_env, "init")
    assert refused.returncode == 1, refused.stdout
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert "master-key version(s) 1" in lines[0]
    assert f"{ring} does not exist" in lines[0]
    assert "docs/backup.md" in lines[0] and "nothing was changed" in lines[0]
    assert not ring.exists()

    # The ring put back from a backup: init goes on as before.
    ring.write_bytes(kept)
    ring.chmod(0o600)
    done = run_sealgate(test_env, "init")
    assert done.returncode == 0, done.stderr
    assert ring.read_bytes() == kept


def test_a_fresh_installation_still_gets_a_ring(test_env: dict[str, str]) -> None:
    if TEST_DATABASE_URL:
        reset_database(TEST_DATABASE_URL)
    data_dir = Path(test_env["SEALGATE_DATA_DIR"])
    done = run_sealgate(test_env, "init")
    assert done.returncode == 0, done.stderr
    assert f"master key written to {ring_path(data_dir)} (mode 0600)" in done.stdout
    assert "admin account admin@example.test created" in done.stdout
