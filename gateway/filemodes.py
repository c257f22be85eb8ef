"""Tighten the modes of the data dir's private files left open by an older version.

Installations made before sealgate ran under umask 077 have `sealgate.db` (and its
-wal/-shm) at 0644; the master key and session key files refuse to load at such a
mode. `sealgate init` and `sealgate serve` call `tighten` so an upgrade closes them
without a manual chmod. Only regular files inside the data dir are touched: a
database that `[database] url` puts elsewhere, and a symlink to anywhere, are left
as they are (that file is the admin's to place).
"""

from __future__ import annotations

import stat
from pathlib import Path

import sqlalchemy as sa

from gateway.settings import Settings

# Beside an SQLite database: its WAL, shared memory, rollback journal, writers' lock.
SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal", "-writers.lock")
# Secrets kept in the data dir (keystore.masterkey, webportal.session_key).
SECRET_FILES = ("master.keys", "session.key")
PRIVATE_MODE = 0o600


def private_files(settings: Settings) -> list[Path]:
    """The data dir's files that must be the owner's only (existing or not)."""
    data_dir = settings.data_dir
    found = [data_dir / name for name in SECRET_FILES]
    url = sa.engine.make_url(settings.database_url)
    database = url.database if url.get_backend_name() == "sqlite" else None
    if database and database != ":memory:" and not database.startswith("file:"):
        found += [Path(database + suffix) for suffix in SQLITE_COMPANIONS]
    return found


def tighten(settings: Settings) -> list[str]:
    """Set each private file of the data dir to 0600 where it is open to others;
    returns one `path (was mode)` entry per file changed."""
    try:
        data_dir = settings.data_dir.resolve(strict=True)
    except OSError:
        return []
    changed = []
    for path in private_files(settings):
        try:
            st = path.lstat()
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode) or not (mode := stat.S_IMODE(st.st_mode)) & 0o077:
            continue
        if data_dir not in path.resolve().parents:
            continue
        try:
            path.chmod(PRIVATE_MODE)  # a regular file (lstat above): no symlink to follow
        except OSError:
            continue  # not ours to change (another owner): loading it says why
        changed.append(f"{path} (was {mode:o})")
    return changed


def describe(changed: list[str]) -> str:
    return "made the owner's only (mode 600): " + ", ".join(changed)
