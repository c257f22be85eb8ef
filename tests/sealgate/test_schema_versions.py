"""The CLI on a database whose schema is not the code's: older (a release installed,
`init` not run yet) or newer (a newer release migrated it, then the admin went back).

Threats: `sealgate backup`, the step an admin takes before migrating, died with a
traceback on an older schema, so there was no backup to go back to; on a schema a
newer release made, serve said "run init" and init then died with a traceback,
leaving the admin no hint that the code, not the database, is behind.
"""

from __future__ import annotations

import json
from pathlib import Path

from alembic import command

from gateway import db
from gateway.runtime import Runtime
from gateway.settings import Settings
from tests.keystore.conftest import run_sealgate
from tests.sealgate.test_backup_restore import wipe

# The schema of an install from before the DKIM keys (migration 0013): the keys table
# is there, the dkim_keys table and later columns are not.
OLD_RELEASE = "0012"


def downgrade(runtime: Runtime, revision: str) -> frozenset[str]:
    command.downgrade(db.alembic_config(runtime.engine), revision)
    return db.schema_revisions(runtime.engine)


def test_a_backup_of_an_older_schema_is_made_and_restores_brought_up_to_date(
    runtime: Runtime,
    settings: Settings,
    mail_users: dict[str, str],
    test_env: dict[str, str],
    tmp_path: Path,
) -> None:
    old = downgrade(runtime, OLD_RELEASE)
    assert old and old != db.head_revisions()

    backup = tmp_path / "before-init"
    made = run_sealgate(test_env, "backup", str(backup))
    assert made.returncode == 0, made.stderr
    assert "Traceback" not in made.stderr
    assert "master-key version(s) 1" in made.stdout
    manifest = json.loads((backup / "manifest.json").read_text())
    assert set(manifest["schema_revisions"]) == old
    assert manifest["master_key_versions"] == [1]
    assert manifest["counts"]["address keys"] == len(mail_users)
    assert db.schema_revisions(runtime.engine) == old  # the backup migrated nothing

    # What the admin does with it if the upgrade goes wrong: restore it (the code
    # brings it up to date), and every account is there.
    wipe(runtime, settings, ring_too=True)
    restored = run_sealgate(test_env, "restore", str(backup))
    assert restored.returncode == 0, restored.stderr
    assert db.schema_revisions(runtime.engine) == db.head_revisions()
    listed = run_sealgate(test_env, "user", "list")
    assert all(address in listed.stdout for address in mail_users), listed.stderr
