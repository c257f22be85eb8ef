"""SMTP submission while the disk under the SQLite database is full, and after.

Found by an operations probe of a running `serve` (2026-12-06): a full disk failed
each message with a generic 451 and a traceback per session. Now the DATA that met it
is answered `452 4.3.1` (RFC 3463: mail system full), nothing of the message is kept,
the log says so once (gateway.outages), and once there is room again the next message
is taken. The disk is a real one: a small tmpfs mounted for the test's data directory.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.smtp_server import SubmissionServer
from tests.conftest import TEST_DATABASE_URL
from tests.gateway.outage_support import (
    capture,
    first_refusal,
    fresh_watch,
    outage_lines,
    tracebacks,
)
from tests.gateway.test_smtp_2fa import auth, starttls_client
from tests.gateway.test_smtp_submission import mailbox_rows, message

__all__ = ["fresh_watch"]

ALICE, BOB = "alice@example.test", "bob@example.test"

pytestmark = [
    pytest.mark.skipif(bool(TEST_DATABASE_URL), reason="the SQLite file's own disk"),
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root"),
]


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB file system of its own, unmounted after the test."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", str(mount)], check=True
    )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


@pytest.fixture
def test_env(test_env: dict[str, str], disk: Path) -> dict[str, str]:
    test_env["SEALGATE_DATA_DIR"] = str(disk / "data")
    return test_env


@contextlib.contextmanager
def full(disk: Path) -> Iterator[None]:
    """Fill the file system to the last block, then free it again."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as out:
        for size in (1 << 20, 4096, 1):
            with contextlib.suppress(OSError):
                while out.write(b"\0" * size):
                    pass
    assert os.statvfs(disk).f_bavail == 0
    try:
        yield
    finally:
        filler.unlink()


@pytest.mark.usefixtures("fresh_watch")
def test_disk_full_is_452_once_logged_and_recovers(
    disk: Path,
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    capture(caplog)
    runtime = submission_server.runtime
    assert Path(str(runtime.engine.url.database)).is_relative_to(disk)
    body = "A line of text that makes the message large enough.\r\n" * 20000  # ~1 MB
    with starttls_client(submission_server, client_ssl_context) as client:
        assert auth(client, ALICE, mail_users[ALICE])[0] == 235
        assert first_refusal(client, ALICE, BOB, message(ALICE, BOB, "before"))[0] == 250
        with full(disk):
            replies = [
                first_refusal(client, ALICE, BOB, message(ALICE, BOB, f"during-{n}", body))
                for n in range(3)
            ]
        assert [(code, text[:5]) for code, text in replies] == [(452, "4.3.1")] * 3, replies
        assert first_refusal(client, ALICE, BOB, message(ALICE, BOB, "after", body))[0] == 250
    assert sorted(m.subject for m in mailbox_rows(runtime, BOB)) == ["after", "before"]
    lines = outage_lines(caplog)
    assert len(lines) == 2, lines
    assert lines[0].startswith("outage: disk full (SQLITE_FULL)")
    assert lines[1].startswith("outage ended: disk full")
    assert tracebacks(caplog) == []
