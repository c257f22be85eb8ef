"""The CLI on a database whose schema is not the code's: older (a release installed,
`init` not run yet) or newer (a newer release migrated it, then the admin went back).

Threats: `sealgate backup`, the step an admin takes before migrating, died with a
traceback on an older schema, so there was no backup to go back to; on a schema a
newer release made, serve said "run init" and init then died with a traceback,
leaving the admin no hint that the code, not the database, is behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from alembic import command

from gateway import db
from gateway.runtime import Runtime
from gateway.settings import Settings
from tests.keystore.conftest import run_sealgate
from tests.sealgate.test_backup_restore import wipe

# The schema of an install from before the DKIM keys (migration 0013): the keys table
# is there, the dkim_keys table and later columns are not.
OLD_RELEASE = "0012"
FUTURE_REVISION = "0099_from_a_newer_release"


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


def snapshot(runtime: Runtime, settings: Settings) -> dict[str, str]:
    """The data dir's files (name, digest) and the database's tables and revisions."""
    state = {
        str(path.relative_to(settings.data_dir)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(settings.data_dir.rglob("*"))
        # SQLite's own files change when anyone reads; the database is compared below.
        if path.is_file() and not path.name.startswith("sealgate.db")
    }
    state["revisions"] = ",".join(sorted(db.schema_revisions(runtime.engine)))
    with runtime.engine.connect() as conn:
        state["tables"] = ",".join(sorted(sa.inspect(conn).get_table_names()))
        state["accounts"] = str(conn.execute(sa.text("SELECT count(*) FROM accounts")).scalar())
    return state


def test_serve_and_init_on_a_schema_a_newer_release_made_say_so_and_change_nothing(
    runtime: Runtime, settings: Settings, mail_users: dict[str, str], test_env: dict[str, str]
) -> None:
    with runtime.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": FUTURE_REVISION})
        conn.execute(sa.text("CREATE TABLE newer_release_things (id INTEGER PRIMARY KEY)"))
    before = snapshot(runtime, settings)

    for args in (["serve"], ["init"], ["user", "list"]):
        done = subprocess.run(
            [sys.executable, "-m", "sealgate", *args],
            env={**os.environ, **test_env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, (args, done.stderr)
        assert f"schema revision {FUTURE_REVISION}" in lines[0]
        assert "migrated by a newer sealgate release" in lines[0]
        assert "install that release" in lines[0]
        assert "restore a backup made before the upgrade" in lines[0]
        assert "run `sealgate init`" not in lines[0]
        assert "sealgate ready" not in done.stdout
    assert snapshot(runtime, settings) == before
