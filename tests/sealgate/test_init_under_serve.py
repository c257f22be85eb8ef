"""`sealgate init` refuses to migrate the schema under a running `sealgate serve`.

Threat: a new release installed while the old serve still runs, then `init`: it
migrated the database under the serve process, whose code expects the old schema
(and, on SQLite, rebuilt tables under its open connections). init takes the data
dir's run lock (gateway.runlock) exclusively, as restore does, and says to stop
serve first; with serve stopped it migrates as before.
"""

from __future__ import annotations

import signal
from pathlib import Path

from gateway import db, runlock
from gateway.runtime import Runtime
from tests.keystore.conftest import run_sealgate
from tests.sealgate.test_schema_versions import downgrade
from tests.sealgate.test_serve import refused_start, running

# The revision before the newest: the code is one migration ahead of the database.
BEHIND = "0017"


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
