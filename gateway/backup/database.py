"""Copy the database out and back: SQLite's online backup API, or pg_dump / pg_restore.

SQLite's backup API copies a consistent snapshot while the gateway keeps writing
(page by page, so progress can be shown). For PostgreSQL the standard tools do
the work; the password goes to them in the environment, never on the command line.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from gateway.backup.manifest import BackupError

SQLITE_FILE = "sealgate.db"
PG_FILE = "database.pgdump"
PAGES_PER_STEP = 256

Progress = Callable[[int, int], None]  # (pages done, pages total)


def kind(url: str) -> str:
    name = sa.engine.make_url(url).get_backend_name()
    if name not in ("sqlite", "postgresql"):
        raise BackupError(f"cannot back up a {name} database")
    return name


def sqlite_path(url: str) -> Path:
    database = sa.engine.make_url(url).database
    if not database or database == ":memory:":
        raise BackupError("the SQLite database is in memory; nothing to back up")
    return Path(database)


def _sqlite_copy(source: Path, target: Path, progress: Progress) -> None:
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(
            dst,
            pages=PAGES_PER_STEP,
            progress=lambda _status, remaining, total: progress(total - remaining, total),
        )
    finally:
        dst.close()
        src.close()


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    parsed = sa.engine.make_url(url)
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    plain = parsed.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} is not installed (Debian: apt-get install postgresql-client)")
    return found


def dump(url: str, directory: Path, progress: Progress) -> str:
    """Write the database into `directory`; the file name it used."""
    if kind(url) == "sqlite":
        source = sqlite_path(url)
        if not source.exists():
            raise BackupError(f"{source} does not exist")
        _sqlite_copy(source, directory / SQLITE_FILE, progress)
        return SQLITE_FILE
    target, env = _libpq(url)
    progress(0, 1)
    result = subprocess.run(
        [_tool("pg_dump"), "--format=custom", "--no-owner", "--file", str(directory / PG_FILE),
         target],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise BackupError(f"pg_dump failed: {result.stderr.strip()[:500]}")
    progress(1, 1)
    return PG_FILE


def load(url: str, directory: Path, name: str, progress: Progress) -> None:
    """Replace the database at `url` with the copy `name` in `directory`."""
    if kind(url) == "sqlite":
        if name != SQLITE_FILE:
            raise BackupError("the backup holds a PostgreSQL dump; [database] url is SQLite")
        target = sqlite_path(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Replaced whole (the caller checked it is empty or was told to): with its WAL
        # and shared-memory files, so no stale page of the old database survives.
        for suffix in ("", "-wal", "-shm"):
            target.with_name(target.name + suffix).unlink(missing_ok=True)
        _sqlite_copy(directory / name, target, progress)
        return
    if name != PG_FILE:
        raise BackupError("the backup holds an SQLite database; [database] url is PostgreSQL")
    target_url, env = _libpq(url)
    progress(0, 1)
    result = subprocess.run(
        [_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--no-privileges",
         "--single-transaction", "--dbname", target_url, str(directory / name)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise BackupError(f"pg_restore failed: {result.stderr.strip()[:500]}")
    progress(1, 1)
