"""`sealgate serve` stopped while it starts: exit 0 and a clean stop, as later on.

Before the event loop's handlers were installed, SIGTERM killed serve (exit 143,
which systemd or a supervisor reads as a crash) and Ctrl-C printed a traceback;
the signal is sent here at points of the start-up a test can see from outside.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.runtime import Runtime
from tests.conftest import TEST_DATABASE_URL
from tests.processes import children, wait_gone

# Whether serve (its pid) has reached a point; `where` holds data/ and serve.log.
Point = Callable[[int, Path], bool]

SIGTERM_BIT = 1 << (signal.SIGTERM - 1)


def catches_sigterm(pid: int, _where: Path) -> bool:
    """The earliest: serve has a handler of its own for SIGTERM (/proc's SigCgt)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except FileNotFoundError:
        return False
    [caught] = [line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")]
    return bool(int(caught, 16) & SIGTERM_BIT)


def has_the_database_open(pid: int, where: Path) -> bool:
    """SQLite: the database file among its open files; PostgreSQL: a TCP connection of
    its own to the database server's port."""
    if TEST_DATABASE_URL:
        port = sa.engine.make_url(TEST_DATABASE_URL).port or 5432
        return bool(_sockets(pid) & _tcp_inodes_to(port))
    database = str(where / "data" / "sealgate.db")
    return database in _open_files(pid)


def _open_files(pid: int) -> set[str]:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return set()
    found = set()
    for fd in fds:
        try:
            found.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
    return found


def _sockets(pid: int) -> set[str]:
    """The inodes of `pid`'s sockets (`socket:[N]` links in /proc/PID/fd)."""
    return {name[8:-1] for name in _open_files(pid) if name.startswith("socket:[")}


def _tcp_inodes_to(port: int) -> set[str]:
    """The inodes of the machine's TCP sockets connected to `port` (IPv4 and IPv6)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text(encoding="ascii").splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[2].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def starts_workers(pid: int, _where: Path) -> bool:
    return bool(children(pid))


def listens(_pid: int, where: Path) -> bool:
    """After the workers, before "ready": the SMTP server has logged that it listens."""
    return "SMTP submission listening" in (where / "serve.log").read_text()


POINTS: dict[str, Point] = {
    "signal-handler-in-place": catches_sigterm,
    "database-open": has_the_database_open,
    "workers-starting": starts_workers,
    "listening": listens,
}


def wait_for(point: Point, proc: subprocess.Popen[bytes], where: Path) -> None:
    """Until serve is at `point`, or already past all of them (ready).

    A point is a moment seen from outside (an open file, a child process): on a loaded
    machine serve can pass one between two looks, and the database file is not held
    open once start-up is over. The signal then comes at ready, still a stop to test."""
    deadline = time.monotonic() + 60
    while not point(proc.pid, where) and not is_ready(where):
        if proc.poll() is not None:
            raise AssertionError(f"serve ended before {point.__name__}")
        if time.monotonic() > deadline:
            raise AssertionError(f"serve reached neither {point.__name__} nor ready in 60 s")
        time.sleep(0.001)


def is_ready(where: Path) -> bool:
    return "sealgate ready" in (where / "serve.log").read_text()


@pytest.mark.parametrize("point", POINTS.values(), ids=POINTS.keys())
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_during_start_up_is_a_clean_stop(
    point: Point,
    signum: signal.Signals,
    test_env: dict[str, str],
    runtime: Runtime,
    mail_users: dict[str, str],
    tmp_path: Path,
) -> None:
    env = {**test_env, "SEALGATE_WORKERS_PROCESSES": "2"}
    assert Path(env["SEALGATE_DATA_DIR"]) == tmp_path / "data"
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log_file:
        # Its own process group: the signal goes to serve and its workers alike, as
        # systemd's stop and a terminal's Ctrl-C send it.
        proc = subprocess.Popen(
            [sys.executable, "-m", "sealgate", "serve"],
            env={**os.environ, **env},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(point, proc, tmp_path)
        workers = children(proc.pid)
        os.killpg(proc.pid, signum)
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    output = log_path.read_text()
    assert code == 0, output
    assert "Traceback" not in output, output
    assert output.rstrip().endswith("stopped"), output
    assert wait_gone(workers) == [], "worker processes outlived serve"
    # Said at most once, and never at the stop.
    if "no smarthost configured" in output:
        assert output.count("no smarthost configured") == 1, output
        assert output.index("no smarthost configured") < output.index("stopping"), output
