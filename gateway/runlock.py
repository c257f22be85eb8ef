"""Whether a `sealgate serve` runs on a data dir, so a restore does not replace its
database underneath it (nor an init migrate it).

A restore that replaced the SQLite file under a running serve left serve writing to
the unlinked file: every message it answered with 250 afterwards was gone when it
stopped. serve holds a shared `flock` on `<data dir>/serve.lock` for its whole life;
restore takes the lock exclusively, without waiting, for as long as it works, and
serve does not start while a restore holds it. `sealgate init` takes it exclusively
too: it must not migrate the schema under a running serve. The kernel drops a lock
with its process, so a killed serve leaves nothing to clean up.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = "serve.lock"


class DataDirBusy(RuntimeError):
    """The lock is held the other way (serve runs, or a restore or an init does)."""


def _open(data_dir: Path) -> int:
    return os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


def hold_for_serve(data_dir: Path) -> int:
    """Take the shared lock for this process's life; the descriptor holding it.

    Raises DataDirBusy while a restore or an init runs on `data_dir`.
    """
    fd = _open(data_dir)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DataDirBusy(f"a restore or `sealgate init` is running on {data_dir}") from None
    return fd


@contextlib.contextmanager
def exclusive(data_dir: Path) -> Iterator[None]:
    """Hold the lock alone while the block runs; DataDirBusy if serve holds it."""
    fd = _open(data_dir)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataDirBusy(f"sealgate serve is running on {data_dir}") from None
        yield
    finally:
        os.close(fd)
