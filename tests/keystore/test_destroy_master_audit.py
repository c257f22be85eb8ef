"""`sealgate keys destroy-master` is audited before the key is gone.

Threat: a master-key version destroyed with no trace. The command rewrote the
ring file first and committed its audit entry after: a kill (or a crash) between
the two, or a rewrite that failed, left the log without the entry, or with a
traceback instead of an error. The entry is now committed before the ring file is
rewritten, and a rewrite that fails is recorded too. Both are shown with real
filesystem conditions at the rewrite (`save_ring` writes `master.tmp` next to
`master.keys`, then renames it): a directory in its place makes the rewrite fail;
a FIFO in its place holds the command inside the rewrite until it is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway.models import AuditEvent
from gateway.settings import Settings
from keystore.masterkey import load_ring, ring_path
from tests.keystore.conftest import run_sealgate

Sessions = so.sessionmaker[so.Session]
DESTROYING = (
    "master.destroy",
    "cli",
    "version 1 destroyed (its key is removed from the ring file next)",
)


def master_events(sessions: Sessions) -> list[tuple[str, str, str]]:
    with sessions() as session:
        return [
            (e.action, e.actor, e.detail)
            for e in session.scalars(
                sa.select(AuditEvent)
                .where(AuditEvent.action.startswith("master.destroy"))
                .order_by(AuditEvent.id)
            )
        ]


def rotated(settings: Settings, test_env: dict[str, str]) -> None:
    """Version 2 primary, version 1 retired and still held: destroyable."""
    result = run_sealgate(test_env, "keys", "rotate-master")
    assert result.returncode == 0, result.stderr
    assert load_ring(settings.data_dir, env={}).decrypt_only_versions == [1]


def the_rewrites_temporary_file(settings: Settings) -> str:
    return str(ring_path(settings.data_dir).with_suffix(".tmp"))


def test_a_rewrite_that_fails_is_audited_and_said_plainly(
    sessions: Sessions, settings: Settings, test_env: dict[str, str]
) -> None:
    rotated(settings, test_env)
    blocker = the_rewrites_temporary_file(settings)
    os.mkdir(blocker)  # open(O_WRONLY) on it fails: EISDIR, as root too

    failed = run_sealgate(test_env, "keys", "destroy-master", "1", "--yes")
    assert failed.returncode == 1
    assert "Traceback" not in failed.stderr
    assert (
        f"Error: master-key version 1 was not destroyed: {ring_path(settings.data_dir)} could"
        " not be rewritten (Is a directory); its key is still in the ring"
    ) in failed.stderr
    assert "destroyed\n" not in failed.stdout
    assert 1 in load_ring(settings.data_dir, env={}).keys
    assert master_events(sessions) == [
        (
            "master.destroy",
            "cli",
            "version 1 destroyed (its key is removed from the ring file next)",
        ),
        (
            "master.destroy_failed",
            "cli",
            "version 1 not destroyed: the ring file could not be rewritten (Is a directory);"
            " its key is still in the ring",
        ),
    ]

    os.rmdir(blocker)
    again = run_sealgate(test_env, "keys", "destroy-master", "1", "--yes")
    assert again.returncode == 0, again.stderr
    assert load_ring(settings.data_dir, env={}).destroyed_versions == [1]
    assert [action for action, _actor, _detail in master_events(sessions)] == [
        "master.destroy",
        "master.destroy_failed",
        "master.destroy",
    ]


def test_a_kill_inside_the_rewrite_leaves_the_audit_entry(
    sessions: Sessions, settings: Settings, test_env: dict[str, str]
) -> None:
    rotated(settings, test_env)
    fifo = the_rewrites_temporary_file(settings)
    os.mkfifo(fifo, 0o600)  # opening it to write waits for a reader that never comes

    held = subprocess.Popen(
        [sys.executable, "-m", "sealgate", "keys", "destroy-master", "1", "--yes"],
        env={**os.environ, **test_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not master_events(sessions):
            assert held.poll() is None, held.communicate()
            assert time.monotonic() < deadline, "no audit entry while the ring is rewritten"
            time.sleep(0.05)
        assert held.poll() is None  # still inside the rewrite, which cannot finish
    finally:
        held.send_signal(signal.SIGKILL)
        held.communicate(timeout=30)
    assert held.returncode == -signal.SIGKILL

    # Killed before the ring file changed: the key is still there, and the log says
    # what the admin set out to do.
    assert 1 in load_ring(settings.data_dir, env={}).keys
    assert master_events(sessions) == [
        (
            "master.destroy",
            "cli",
            "version 1 destroyed (its key is removed from the ring file next)",
        )
    ]

    os.unlink(fifo)
    again = run_sealgate(test_env, "keys", "destroy-master", "1", "--yes")
    assert again.returncode == 0, again.stderr
    assert load_ring(settings.data_dir, env={}).destroyed_versions == [1]
    assert len(master_events(sessions)) == 2
