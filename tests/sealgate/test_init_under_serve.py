"""`sealgate init` refuses to migrate the schema under a running `sealgate serve`.

Threat: a new release installed while the old serve still runs, then `init`: it
migrated the database under the serve process, whose code expects the old schema
(and, on SQLite, rebuilt tables under its open connections). init takes the data
dir's run lock (gateway.runlock) exclusively, as restore does, and says to stop
serve first; with serve stopped it migrates as before.
"""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway import db, runlock
from gateway.runtime import Runtime
from tests.conftest import TEST_DATABASE_URL
from tests.keystore.conftest import run_sealgate
from tests.sealgate.test_schema_versions import downgrade
from tests.sealgate.test_serve import refused_start, running

# The revision before the newest: the code is one migration ahead of the database.
BEHIND = "0017"

on_postgresql = pytest.mark.skipif(
    not TEST_DATABASE_URL, reason="several hosts share a PostgreSQL database only"
)

# Whether any session holds sealgate's run lock (a bigint key: classid the high half).
HELD = sa.text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
    " AND ((classid::bigint << 32) | objid::bigint) = :key"
)


def test_init_refuses_under_a_running_serve_and_migrates_once_it_stopped(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str]
) -> None:
    with running(test_env) as server:
        # What installing a newer release under the running serve amounts to.
        assert downgrade(runtime, BEHIND) == {BEHIND}
        refused = run_sealgate(test_env, "init")
        assert refused.returncode == 1, refused.stdout
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1, refused.stderr
        assert f"sealgate serve is running on {test_env['SEALGATE_DATA_DIR']}" in lines[0]
        assert "stop it first" in lines[0] and "nothing was changed" in lines[0]
        assert db.schema_revisions(runtime.engine) == {BEHIND}
        assert server.proc.poll() is None  # serve itself is not disturbed
        server.proc.send_signal(signal.SIGTERM)
        assert server.wait_and_close() == 0

    done = run_sealgate(test_env, "init")
    assert done.returncode == 0, done.stderr
    assert "database schema upgraded" in done.stdout
    assert db.schema_revisions(runtime.engine) == db.head_revisions()


def test_serve_does_not_start_while_init_holds_the_data_dir(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str]
) -> None:
    """The lock works the other way too, and serve's refusal no longer says only "a
    restore": init holds it as well."""
    with runlock.exclusive(Path(test_env["SEALGATE_DATA_DIR"])):
        done = refused_start(test_env)
    assert "a restore or `sealgate init` is running on" in done.stderr


def second_host(test_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """Another host's environment: its own data dir (the same master key ring and TLS
    files, as docs/deployment.md has every host share them) on the same PostgreSQL
    database. No lock file in the data dir tells it of the first host's serve."""
    data_dir = tmp_path / "host-b"
    shutil.copytree(
        test_env["SEALGATE_DATA_DIR"], data_dir, ignore=shutil.ignore_patterns(runlock.LOCK_FILE)
    )
    return {**test_env, "SEALGATE_DATA_DIR": str(data_dir)}


@on_postgresql
def test_init_on_another_host_refuses_while_a_serve_holds_the_database(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str], tmp_path: Path
) -> None:
    """Threat: serve on host A, the new release installed on host B and its init run
    there: B's data dir has no serve.lock held, and the migration ran under A's serve."""
    host_b = second_host(test_env, tmp_path)
    with running(test_env) as server:
        assert downgrade(runtime, BEHIND) == {BEHIND}
        refused = run_sealgate(host_b, "init")
        assert refused.returncode == 1, refused.stdout
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1, refused.stderr
        assert "sealgate serve is running on the PostgreSQL database" in lines[0]
        assert "stop it first" in lines[0] and "nothing was changed" in lines[0]
        assert db.schema_revisions(runtime.engine) == {BEHIND}
        assert server.proc.poll() is None
        server.proc.send_signal(signal.SIGTERM)
        assert server.wait_and_close() == 0

    done = run_sealgate(host_b, "init")
    assert done.returncode == 0, done.stderr
    assert "database schema upgraded" in done.stdout
    assert db.schema_revisions(runtime.engine) == db.head_revisions()


@on_postgresql
def test_a_killed_serve_leaves_the_database_free(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str], tmp_path: Path
) -> None:
    """PostgreSQL ends a session lock with its connection: a serve killed with SIGKILL
    leaves nothing to clean up (and its worker processes hold no share of it)."""
    host_b = second_host(test_env, tmp_path)
    with running({**test_env, "SEALGATE_WORKERS_PROCESSES": "2"}) as server:
        assert run_sealgate(host_b, "init").returncode == 1
        server.proc.kill()
        server.wait_and_close()
    # The backend sees the closed socket at once; its exit may take a moment.
    for _ in range(300):
        with runtime.engine.connect() as conn:
            if not conn.scalar(HELD, {"key": runlock.RUN_LOCK_KEY}):
                break
        time.sleep(0.1)
    done = run_sealgate(host_b, "init")
    assert done.returncode == 0, done.stderr


@on_postgresql
def test_serve_does_not_start_while_a_migration_on_another_host_holds_the_database(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str], tmp_path: Path
) -> None:
    host_b = second_host(test_env, tmp_path)
    with runlock.exclusive_database(host_b["SEALGATE_DATABASE_URL"], "sealgate init"):
        done = refused_start(test_env)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "a restore or `sealgate init` is running on the PostgreSQL database" in lines[0]
    # Two serves on two hosts share the database.
    with running(test_env), running(host_b) as second:
        assert second.proc.poll() is None


@on_postgresql
def test_restore_on_another_host_refuses_while_a_serve_holds_the_database(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str], tmp_path: Path
) -> None:
    """A restore replaces the database under every serve that shares it, not only under
    the one of its own data dir: what they accepted meanwhile would be lost."""
    host_b = second_host(test_env, tmp_path)
    backup = tmp_path / "backup"
    assert run_sealgate(host_b, "backup", str(backup)).returncode == 0
    with running(test_env) as server:
        refused = run_sealgate(host_b, "restore", "--force", str(backup))
        assert refused.returncode == 1, refused.stdout
        assert "Traceback" not in refused.stderr
        assert "sealgate serve is running on the PostgreSQL database" in refused.stderr
        assert "nothing was changed" in refused.stderr
        server.proc.send_signal(signal.SIGTERM)
        assert server.wait_and_close() == 0
    done = run_sealgate(host_b, "restore", "--force", str(backup))
    assert done.returncode == 0, done.stderr
