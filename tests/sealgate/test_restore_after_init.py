"""Disaster recovery as a new admin does it: `sealgate init` on the new machine, then
`sealgate restore` of the old one's backup.

Threat: the fresh ring from init is version 1 too, so restore refuses to merge it
with the backup's and says only that the rings "belong to different installations";
the admin, not told what to do, is stuck with the mail unrestored (or deletes the
wrong file). The refusal must say how to go on, and going on that way must work.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.settings import Settings
from keystore.masterkey import MasterKeyRing, ring_path, save_ring
from tests.keystore.conftest import run_sealgate


@pytest.mark.usefixtures("mail_users")
def test_a_restore_onto_a_fresh_init_says_how_to_go_on(
    test_env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    backup = tmp_path / "backup"
    assert run_sealgate(test_env, "backup", str(backup)).returncode == 0
    new_machine = tmp_path / "new-machine"
    new_machine.mkdir(mode=0o700)
    fresh = MasterKeyRing.generate()  # what init writes there
    save_ring(new_machine, fresh)
    env = {**test_env, "SEALGATE_DATA_DIR": str(new_machine)}

    refused = run_sealgate(env, "restore", "--force", str(backup))
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "master key version 1 differs between the two rings" in refused.stderr
    assert f"the ring in {ring_path(new_machine)} is not the one this backup" in refused.stderr
    assert "move master.keys aside and restore again with --force" in refused.stderr
    assert "nothing was changed" in refused.stderr
    assert ring_path(new_machine).read_text() == fresh.to_json()

    ring_path(new_machine).rename(new_machine / "master.keys.from-init")
    restored = run_sealgate(env, "restore", "--force", str(backup))
    assert restored.returncode == 0, restored.stderr
    assert ring_path(new_machine).read_bytes() == ring_path(settings.data_dir).read_bytes()
    listed = run_sealgate(env, "user", "list")
    assert "alice@example.test" in listed.stdout, listed.stderr
