"""`sealgate purge` and the hourly purge in `sealgate serve`: expired and revoked secure
pages lose their ciphertext; pages someone can still open keep it.

Threat: a message kept on the server longer than promised (30 days, or until the
sender revokes it) is a message a later break-in can still take.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import pty
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
import sqlalchemy.orm as so
from click.testing import CliRunner, Result

from gateway import db, purging
from gateway.models import AuditEvent, SecureLink, SecureMessage
from gateway.runtime import Runtime
from gateway.securepage import links, purge
from gateway.timeutil import utcnow
from sealgate.cli.base import cli
from tests.sealgate.test_serve import running
from tests.webportal.test_secure import compose, send


def run(test_env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env=test_env)


def change(runtime: Runtime, token: str, **values: object) -> None:
    with db.transaction(runtime.sessions) as session:
        session.execute(
            sa.update(SecureLink)
            .where(SecureLink.token_digest == links.digest(token))
            .values(**values)
        )


def message_of(runtime: Runtime, token: str) -> SecureMessage:
    with db.read_only(runtime.sessions) as session:
        message = session.scalar(
            sa.select(SecureMessage)
            .join(SecureMessage.links)
            .where(SecureLink.token_digest == links.digest(token))
            .options(so.undefer(SecureMessage.ciphertext))
        )
        assert message is not None
        return message


def purge_events(runtime: Runtime) -> list[tuple[str, str, str]]:
    with db.read_only(runtime.sessions) as session:
        events = session.scalars(
            sa.select(AuditEvent)
            .where(AuditEvent.action.startswith("securepage.purge"))
            .order_by(AuditEvent.id)
        ).all()
        return [(e.action, e.actor, e.detail) for e in events]


def test_purge_deletes_only_what_nobody_can_open(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str]
) -> None:
    now = utcnow()
    active = send(runtime, compose(to="a@x.example"), ["a@x.example"])["a@x.example"]
    locked = send(runtime, compose(to="l@x.example"), ["l@x.example"])["l@x.example"]
    revoked = send(runtime, compose(to="r@x.example"), ["r@x.example"])["r@x.example"]
    expired = send(runtime, compose(to="e@x.example"), ["e@x.example"])["e@x.example"]
    both = send(runtime, compose(to="p@x.example, q@x.example"), ["p@x.example", "q@x.example"])
    change(runtime, locked, locked_at=now, failures=10)
    change(runtime, revoked, revoked_at=now)
    change(runtime, expired, expires_at=now - dt.timedelta(minutes=1))
    change(runtime, both["p@x.example"], revoked_at=now)  # q's link still works

    dry = run(test_env, "purge", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "2 secure-page message(s) would be purged" in dry.output
    assert message_of(runtime, revoked).ciphertext is not None

    result = run(test_env, "purge")
    assert result.exit_code == 0, result.output
    assert "purged 2 secure-page message(s)" in result.output
    for gone in (revoked, expired):
        message = message_of(runtime, gone)
        assert message.ciphertext is None and message.wrapped_key is None
        assert message.purged_at is not None and message.size == 0
    # A locked link can still be unlocked by a new password; q can still open theirs.
    for kept in (active, locked, both["q@x.example"]):
        assert message_of(runtime, kept).ciphertext is not None
    assert purge_events(runtime) == [
        ("securepage.purge", "cli", "2 ciphertexts deleted"),
        ("securepage.purge.run", "cli", "2 ciphertexts deleted, 0 purged messages forgotten"),
    ]
    assert "purged 0" in run(test_env, "purge").output  # idempotent
    # An admin who ran it finds that they did, and that it removed nothing this time.
    assert purge_events(runtime)[2:] == [
        ("securepage.purge.run", "cli", "0 ciphertexts deleted, 0 purged messages forgotten")
    ]
    with db.read_only(runtime.sessions) as session:
        clients = session.scalars(
            sa.select(AuditEvent.user_agent).where(AuditEvent.action.startswith("securepage."))
        ).all()
    assert len(clients) == 3 and all(getpass.getuser() in c for c in clients)
    assert run(test_env, "purge", "--dry-run").exit_code == 0
    assert len(purge_events(runtime)) == 3  # a dry run changes nothing, so records nothing


def test_a_link_extended_before_the_purge_keeps_its_message(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    now = utcnow()
    token = send(runtime, compose(), ["carol@elsewhere.example"])["carol@elsewhere.example"]
    change(runtime, token, expires_at=now - dt.timedelta(minutes=1))
    with db.read_only(runtime.sessions) as session:
        due = purge.due_for_purge(session, now)
    assert len(due) == 1
    change(runtime, token, expires_at=now + dt.timedelta(days=3))  # the sender extended it
    with db.transaction(runtime.sessions) as session:
        assert purge.purge_messages(session, due, now) == 0
    assert message_of(runtime, token).ciphertext is not None


def test_history_is_forgotten_after_history_days(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    token = send(runtime, compose(), ["carol@elsewhere.example"])["carol@elsewhere.example"]
    now = utcnow()
    change(runtime, token, revoked_at=now)
    assert purge.purge(runtime, now).ciphertexts == 1
    days = runtime.settings.securepage.history_days
    assert purge.purge(runtime, now + dt.timedelta(days=days - 1)).forgotten == 0
    assert purge.purge(runtime, now + dt.timedelta(days=days, minutes=1)).forgotten == 1
    with db.read_only(runtime.sessions) as session:
        assert session.scalars(sa.select(SecureMessage)).all() == []
        assert session.scalars(sa.select(SecureLink)).all() == []


def test_serve_purges_when_it_starts_and_stops_cleanly(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str]
) -> None:
    token = send(runtime, compose(), ["carol@elsewhere.example"])["carol@elsewhere.example"]
    change(runtime, token, revoked_at=utcnow())
    with running(test_env) as server:
        deadline = time.monotonic() + 60
        while message_of(runtime, token).purged_at is None and time.monotonic() < deadline:
            time.sleep(0.1)
        server.proc.send_signal(signal.SIGTERM)
        assert server.wait_and_close() == 0
    assert message_of(runtime, token).ciphertext is None
    assert not any("purge failed" in line for line in server.output), server.output
    # The scheduled purge is the gateway's own doing: audited under the job's name,
    # and only when it deleted something (no entry every hour for nothing).
    assert purge_events(runtime) == [("securepage.purge", "purge", "1 ciphertexts deleted")]


def run_in_terminal(test_env: dict[str, str], *args: str) -> str:
    """The real command line with a terminal for its output, as an admin sees it (click
    draws a progress bar only on a terminal)."""
    leader, follower = pty.openpty()
    with subprocess.Popen(
        [sys.executable, "-m", "sealgate", *args],
        env={**os.environ, **test_env, "COLUMNS": "120"},
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
    ) as proc:
        os.close(follower)
        out = bytearray()
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the command ended and closed the terminal
                break
            if not chunk:
                break
            out += chunk
        assert proc.wait(300) == 0, out.decode(errors="replace")
    os.close(leader)
    return out.decode(errors="replace")


def test_the_cli_shows_progress_over_ciphertexts_and_forgotten_history(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str]
) -> None:
    """Long work shows progress: the bar counts the ciphertexts due and then the
    purged messages forgotten, and both steps delete in batches."""
    now = utcnow()
    tokens = {
        rcpt: send(runtime, compose(to=rcpt), [rcpt])[rcpt]
        for rcpt in ("a@x.example", "b@x.example", "c@x.example")
    }
    old = now - dt.timedelta(days=runtime.settings.securepage.history_days + 1)
    for address in ("a@x.example", "b@x.example"):  # purged long ago: to be forgotten
        change(runtime, tokens[address], revoked_at=old)
    assert purge.purge(runtime, old).ciphertexts == 2
    change(runtime, tokens["c@x.example"], revoked_at=now)  # due now
    dry = run(test_env, "purge", "--dry-run").output
    assert "1 secure-page message(s) would be purged" in dry
    assert "2 purged secure-page message(s) would be forgotten" in dry

    shown = run_in_terminal(test_env, "purge")

    assert "purging secure pages" in shown
    assert "3/3" in shown  # 1 ciphertext + 2 forgotten, not only the first step's 1/1
    assert "purged 1 secure-page message(s); forgot 2 purged" in shown
    with db.read_only(runtime.sessions) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(SecureMessage)) == 1
        assert session.scalar(sa.select(sa.func.count()).select_from(SecureLink)) == 1


def test_forgetting_history_deletes_in_batches(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    now = utcnow()
    rcpts = [f"r{n}@x.example" for n in range(5)]
    tokens = {rcpt: send(runtime, compose(to=rcpt), [rcpt])[rcpt] for rcpt in rcpts}
    for token in tokens.values():
        change(runtime, token, revoked_at=now)
    assert purge.purge(runtime, now).ciphertexts == 5
    later = now + dt.timedelta(days=runtime.settings.securepage.history_days, minutes=1)
    batches: list[int] = []
    forgotten = purge.forget_history(
        runtime.sessions,
        later,
        runtime.settings.securepage,
        purging.Batches(size=2, progress=batches.append, pause=0),
    )
    assert (forgotten, batches) == (5, [2, 2, 1])
    with db.read_only(runtime.sessions) as session:
        assert session.scalars(sa.select(SecureLink)).all() == []


def test_a_purged_ciphertext_leaves_neither_the_database_nor_its_wal(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str]
) -> None:
    """Threat: a copy of the data directory taken after the purge still holds the
    ciphertext that was promised gone (in free pages, or in SQLite's WAL)."""
    if runtime.engine.dialect.name != "sqlite":
        pytest.skip("about SQLite's own files; PostgreSQL keeps no -wal file beside them")
    token = send(runtime, compose(), ["carol@elsewhere.example"])["carol@elsewhere.example"]
    change(runtime, token, revoked_at=utcnow())
    with db.read_only(runtime.sessions) as session:
        stored = session.execute(sa.text("SELECT ciphertext FROM secure_messages")).scalar_one()
    piece = bytes(stored)[64:96]
    path = Path(str(runtime.engine.url.database))
    wal = path.with_name(path.name + "-wal")

    def on_disk() -> bytes:
        return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")

    assert piece in on_disk()
    # A running server keeps the database open (as this test's runtime does): the
    # purge's connection is not the last one, so SQLite does not checkpoint and delete
    # the WAL when the command ends.
    serve = sqlite3.connect(path)
    try:
        serve.execute("SELECT count(*) FROM secure_messages").fetchone()
        purged = run(test_env, "purge")
        assert purged.exit_code == 0, purged.output
        assert message_of(runtime, token).ciphertext is None
        assert piece not in on_disk()
    finally:
        serve.close()
