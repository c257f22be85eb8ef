"""Going back to the backup taken before an upgrade, after `sealgate init` migrated.

Threat: on PostgreSQL, `pg_restore --clean` drops and remakes only the backup's own
tables; a table the upgrade added (here known_mail_clients, migration 0018, which
refers to accounts) stayed, so dropping accounts failed inside pg_restore and the
admin got its error text, with nothing said about why or what to do. Restore now
names such tables before it changes anything. On SQLite the file is replaced whole,
so the same restore simply works.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from gateway import db
from gateway.runtime import Runtime
from tests.conftest import TEST_DATABASE_URL
from tests.keystore.conftest import run_sealgate
from tests.sealgate.test_schema_versions import downgrade

BEFORE_UPGRADE = "0017"  # known_mail_clients (0018) is not there yet
NEWER_TABLE = "known_mail_clients"


def tables(runtime: Runtime) -> set[str]:
    with runtime.engine.connect() as conn:
        return set(sa.inspect(conn).get_table_names())


def test_a_pre_upgrade_backup_restores_over_the_upgraded_database(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str], tmp_path: Path
) -> None:
    assert downgrade(runtime, BEFORE_UPGRADE) == {BEFORE_UPGRADE}
    backup = tmp_path / "before-upgrade"
    made = run_sealgate(test_env, "backup", str(backup))
    assert made.returncode == 0, made.stderr
    upgraded = run_sealgate(test_env, "init")
    assert "database schema upgraded" in upgraded.stdout, upgraded.stderr
    # Something the upgraded release wrote meanwhile (the backup has none of it).
    assert run_sealgate(test_env, "user", "add", "dave@example.test").returncode == 0
    runtime.engine.dispose()

    if TEST_DATABASE_URL:
        refused = run_sealgate(test_env, "restore", "--force", str(backup))
        assert refused.returncode == 1, refused.stdout
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in refused.stderr, refused.stderr
        assert "pg_restore failed" not in lines[0]
        assert f"tables the backup does not hold: {NEWER_TABLE}" in lines[0]
        assert "nothing was changed" in lines[0]
        # Nothing was changed: the upgraded database is still there, whole.
        assert db.schema_revisions(runtime.engine) == db.head_revisions()
        listed = run_sealgate(test_env, "user", "list")
        assert "dave@example.test" in listed.stdout, listed.stderr
        # What the message tells the admin to do.
        with runtime.engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE {NEWER_TABLE} CASCADE"))
        runtime.engine.dispose()

    restored = run_sealgate(test_env, "restore", "--force", str(backup))
    assert restored.returncode == 0, restored.stderr
    # The backup's data, brought up to the code's schema again by the restore.
    assert db.schema_revisions(runtime.engine) == db.head_revisions()
    assert NEWER_TABLE in tables(runtime)
    listed = run_sealgate(test_env, "user", "list")
    assert all(a in listed.stdout for a in mail_users) and "dave@" not in listed.stdout
