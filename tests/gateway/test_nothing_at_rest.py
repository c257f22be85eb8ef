"""Nothing in clear at rest: an encrypted message's marker is nowhere on disk, in the
database (file or PostgreSQL dump) or in the logs, except in the clear subject when
the sender put it there on purpose."""

from __future__ import annotations

import logging
import shutil
import smtplib
import ssl
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer

ALICE, BOB, CAROL = "alice@example.test", "bob@example.test", "carol@elsewhere.example"
MARKER = "Zebra-7f3c1e-Quokka"


def database_text(runtime: Runtime) -> bytes:
    """Everything the database holds, as bytes: its files for SQLite, a dump for PostgreSQL."""
    if runtime.engine.dialect.name == "sqlite":
        return b""  # the files are in the data dir, scanned with everything else
    url = runtime.engine.url
    if shutil.which("pg_dump"):
        return subprocess.run(
            [
                "pg_dump",
                "-h",
                url.host or "127.0.0.1",
                "-U",
                url.username or "postgres",
                url.database or "test",
            ],
            capture_output=True,
            check=True,
        ).stdout
    chunks: list[bytes] = []
    with runtime.engine.connect() as conn:
        for table in sa.inspect(conn).get_table_names():
            for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):  # noqa: S608
                chunks.extend(v if isinstance(v, bytes) else str(v).encode() for v in row)
    return b"\n".join(chunks)


def all_files(root: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


@pytest.mark.parametrize("marker_in_subject", [False, True])
def test_marker_is_nowhere_at_rest(
    marker_in_subject: bool,
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    runtime: Runtime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    subject = f"[encrypt] {MARKER}" if marker_in_subject else "[encrypt] quarterly figures"
    raw = (
        f"From: {ALICE}\r\nTo: {BOB}, {CAROL}\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="m"\r\n\r\n--m\r\n'
        f"Content-Type: text/plain\r\n\r\nThe body says {MARKER}.\r\n--m\r\n"
        f'Content-Type: application/octet-stream; name="{MARKER}.bin"\r\n'
        f"Content-Transfer-Encoding: 8bit\r\n\r\n{MARKER} in an attachment\r\n--m--\r\n"
    ).encode()
    with smtplib.SMTP_SSL(
        "127.0.0.1", submission_server.tls_port, context=client_ssl_context, timeout=60
    ) as client:
        client.login(ALICE, mail_users[ALICE])
        # A hosted recipient (PGP/MIME) and an external one without a key (secure page,
        # with a notification waiting in the outbound queue).
        assert client.sendmail(ALICE, [BOB, CAROL], raw) == {}

    with runtime.engine.connect() as conn:
        # The scan below covers a sealed secure page and its queued notification too.
        assert conn.execute(sa.text("SELECT count(*) FROM secure_messages")).scalar() == 1
        assert conn.execute(sa.text("SELECT count(*) FROM outbound_queue")).scalar() == 1
    marker = MARKER.encode()
    at_rest = all_files(runtime.settings.data_dir) + database_text(runtime)
    logs = "\n".join(r.getMessage() for r in caplog.records).encode()
    if marker_in_subject:
        # Only the clear subject: the stored subject column and the outer Subject header
        # of the two copies (Bob's inbox, Alice's Sent), nothing from the body.
        assert at_rest.count(marker) >= 1
        assert marker + b"." not in at_rest and marker + b" in an" not in at_rest
        assert marker + b".bin" not in at_rest
    else:
        assert marker not in at_rest
    assert marker + b"." not in logs and marker + b" in an" not in logs
    if not marker_in_subject:
        assert marker not in logs
