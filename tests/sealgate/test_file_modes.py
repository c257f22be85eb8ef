"""Threat: a local user reads the database, its WAL, a backup or the TLS key.

The data dir is 0700, but a file in it made with the admin's usual umask (0022)
was 0644: copied out by a careless `cp -a`, or reachable once the directory's mode
is loosened, it gave away every hash and wrapped key. Everything `init`, `serve`
and `backup` write must be the owner's only, whatever umask they were started with.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_DATABASE_URL, reset_database
from tests.sealgate.test_serve import start_serve

ADMIN_UMASK = 0o022
# The database's own files live in the data dir on SQLite only.
SQLITE_FILES = () if TEST_DATABASE_URL else ("sealgate.db", "sealgate.db-writers.lock")
BACKED_UP_DATABASE = "database.pgdump" if TEST_DATABASE_URL else "sealgate.db"


@pytest.fixture(autouse=True)
def _empty_database() -> None:
    """Each test runs `init` on a new installation: on PostgreSQL, an empty database."""
    if TEST_DATABASE_URL:
        reset_database(TEST_DATABASE_URL)


def sealgate(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sealgate", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        umask=ADMIN_UMASK,
    )


def open_to_others(top: Path) -> list[str]:
    """What `find top -perm /077` lists: any path with a group or other bit."""
    found = []
    for path in [top, *top.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077:
            found.append(f"{path.relative_to(top.parent)} {mode:o}")
    return found


def test_init_serve_and_backup_write_nothing_others_can_read(
    test_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**test_env, "SEALGATE_WORKERS_PROCESSES": "1"}
    data_dir = Path(env["SEALGATE_DATA_DIR"])
    done = sealgate(env, "init")
    assert done.returncode == 0, done.stderr

    server = start_serve(env, umask=ADMIN_UMASK)
    server.proc.send_signal(signal.SIGTERM)
    assert server.wait_and_close() == 0, server.output

    backup_dir = tmp_path / "backup"
    done = sealgate(env, "backup", str(backup_dir))
    assert done.returncode == 0, done.stderr

    made = {p.name for p in data_dir.rglob("*")}
    assert {*SQLITE_FILES, "master.keys", "key.pem"} <= made
    assert BACKED_UP_DATABASE in {p.name for p in backup_dir.iterdir()}
    assert open_to_others(data_dir) == []
    assert open_to_others(backup_dir) == []


@pytest.mark.skipif(
    bool(TEST_DATABASE_URL), reason="a restored SQLite file's mode; PostgreSQL's is the server's"
)
def test_a_restored_database_is_the_owners_only(test_env: dict[str, str], tmp_path: Path) -> None:
    data_dir = Path(test_env["SEALGATE_DATA_DIR"])
    assert sealgate(test_env, "init").returncode == 0
    backup_dir = tmp_path / "backup"
    assert sealgate(test_env, "backup", str(backup_dir)).returncode == 0
    (data_dir / "sealgate.db").unlink()

    done = sealgate(test_env, "restore", str(backup_dir))
    assert done.returncode == 0, done.stderr
    assert open_to_others(data_dir) == []


OLD_PRIVATE_FILES = (*SQLITE_FILES, "master.keys", "session.key")


def loosen(data_dir: Path) -> None:
    """What an installation made before the umask fix holds: its files at 0644."""
    (data_dir / "session.key").write_bytes(os.urandom(32))
    for name in OLD_PRIVATE_FILES:
        (data_dir / name).chmod(0o644)


def test_init_and_serve_tighten_an_older_installations_files(
    test_env: dict[str, str], tmp_path: Path
) -> None:
    """Upgrading must close what the old version left open, and say so once."""
    data_dir = Path(test_env["SEALGATE_DATA_DIR"])
    assert sealgate(test_env, "init").returncode == 0
    outside = tmp_path / "notes.txt"
    outside.write_text("not sealgate's")
    outside.chmod(0o644)

    loosen(data_dir)
    done = sealgate(test_env, "init")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("made the owner's only") == 1, done.stdout
    assert open_to_others(data_dir) == []
    again = sealgate(test_env, "init")
    assert "made the owner's only" not in again.stdout, again.stdout

    loosen(data_dir)
    server = start_serve(test_env, umask=ADMIN_UMASK)
    server.proc.send_signal(signal.SIGTERM)
    assert server.wait_and_close() == 0, server.output
    log = "".join(server.output)
    assert log.count("made the owner's only") == 1, log
    assert open_to_others(data_dir) == []
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644


def test_a_database_outside_the_data_dir_keeps_its_mode(
    test_env: dict[str, str], tmp_path: Path
) -> None:
    """A file that `[database] url` puts elsewhere is the admin's to place and guard."""
    elsewhere = tmp_path / "db"
    elsewhere.mkdir()
    database = elsewhere / "mail.db"
    env = {**test_env, "SEALGATE_DATABASE_URL": f"sqlite:///{database}"}
    assert sealgate(env, "init").returncode == 0
    database.chmod(0o644)

    done = sealgate(env, "init")
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(database.stat().st_mode) == 0o644
    assert "made the owner's only" not in done.stdout, done.stdout
