"""`sealgate purge` runs every purge `sealgate serve` runs: secure pages, the mail log,
and the activity (audit events, portal sessions, devices, mail networks, lockouts).

Threat: an admin who lowers a retention setting, or whose server is stopped, cannot
delete now what is kept longer than promised; a dry run that deletes, or a JSON answer
whose shape scripts cannot rely on.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from gateway import audit, db, known_clients, login_alerts, sessions
from gateway.admin import maillog
from gateway.models import (
    Account,
    AuditEvent,
    KnownDevice,
    KnownMailClient,
    LoginLockout,
    MailLogEntry,
    PortalSession,
    SecureMessage,
)
from gateway.runtime import Runtime
from gateway.timeutil import utcnow
from sealgate.cli.base import cli
from tests.gateway.test_secure_page_purge import change, message_of, run_in_terminal
from tests.webportal.test_secure import compose, send

RUNS = ("securepage.purge.run", "maillog.purge.run", "activity.purge.run")


def run(test_env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env=test_env)


def count(runtime: Runtime, model: type) -> int:
    with db.read_only(runtime.sessions) as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(model)) or 0)


def log_entry(recipient: str, at: dt.datetime) -> MailLogEntry:
    return MailLogEntry(
        queue_id="Q" + recipient[:8],
        message_id="<purge-test@example.test>",
        sender="alice@example.test",
        recipient=recipient,
        handling="pgp",
        status=maillog.SENT,
        last_reply="250 2.0.0 Ok",
        created_at=at,
        updated_at=at,
    )


def lockout_row(key: str, at: dt.datetime) -> LoginLockout:
    return LoginLockout(
        key=key, failures=1, window_started_at=at, locked_until=None, last_failure_at=at
    )


def fill(runtime: Runtime, now: dt.datetime) -> dict[str, str]:
    """Two of each kind: one older than its retention, one within it; the secure
    pages: one revoked (due), one still open. Returns the secure pages' tokens."""
    settings = runtime.settings
    log_days = settings.admin.mail_log_days
    activity_days = settings.security.activity_days
    old, recent = (
        now - dt.timedelta(days=activity_days, hours=1),
        now - dt.timedelta(days=activity_days - 1),
    )
    client_days = settings.security.known_client_days
    with db.transaction(runtime.sessions) as session:
        account_id = session.scalars(
            sa.select(Account.id).where(Account.email == "alice@example.test")
        ).one()
        session.add(log_entry("old@x.test", now - dt.timedelta(days=log_days, hours=1)))
        session.add(log_entry("kept@x.test", now - dt.timedelta(days=log_days - 1)))
        for at in (old, recent):
            audit.record(session, "login", actor="alice", account_id=account_id).at = at
        # Not personal: stays whatever its age.
        audit.record(session, "domain.add", actor="cli", target="old.test").at = old
        ended = sessions.create(session, account_id, "n1", ip="", user_agent="", now=old)
        sessions.create(session, account_id, "n2", ip="", user_agent="", now=recent)
        sessions.end(session, account_id, ended.id, reason="logout", now=old)
        login_alerts.remember_device(session, account_id, "203.0.113.5", "Firefox/1", old)
        login_alerts.remember_device(session, account_id, "198.51.100.5", "Firefox/1", recent)
        for ip, seen in (
            ("192.0.2.7", now - dt.timedelta(days=client_days, hours=1)),
            ("2001:db8:1:2::5", now - dt.timedelta(days=client_days - 1)),
        ):
            known_clients.note_mail_login(session, settings.security, account_id, ip, seen)
        session.add(lockout_row("name:old@example.test", old))
        session.add(lockout_row("name:new@example.test", now - dt.timedelta(seconds=30)))
    due = send(runtime, compose(to="d@x.example"), ["d@x.example"])["d@x.example"]
    kept = send(runtime, compose(to="k@x.example"), ["k@x.example"])["k@x.example"]
    change(runtime, due, revoked_at=now)
    return {"due": due, "kept": kept}


def state(runtime: Runtime) -> dict[str, object]:
    with db.read_only(runtime.sessions) as session:
        return {
            "log": sorted(session.scalars(sa.select(MailLogEntry.recipient).where(
                MailLogEntry.recipient.like("%@x.test")))),
            "logins": len(session.scalars(sa.select(AuditEvent.id).where(
                AuditEvent.action == "login")).all()),
            "sessions": session.scalar(sa.select(sa.func.count()).select_from(PortalSession)),
            "devices": sorted(session.scalars(sa.select(KnownDevice.network))),
            "clients": sorted(session.scalars(sa.select(KnownMailClient.network))),
            "lockouts": sorted(session.scalars(sa.select(LoginLockout.key))),
        }  # fmt: skip


def run_events(runtime: Runtime) -> list[tuple[str, str]]:
    with db.read_only(runtime.sessions) as session:
        events = session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action.in_(RUNS)).order_by(AuditEvent.id)
        ).all()
        return [(e.action, e.detail) for e in events]


def test_purge_runs_every_purge_of_serve_and_a_dry_run_only_counts(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str]
) -> None:
    now = utcnow()
    tokens = fill(runtime, now)
    before = state(runtime)
    assert before == {
        "log": ["kept@x.test", "old@x.test"],
        "logins": 2,
        "sessions": 2,
        "devices": ["198.51.100.0/24", "203.0.113.0/24"],
        "clients": ["192.0.2.7/32", "2001:db8:1:2::/64"],
        "lockouts": ["name:new@example.test", "name:old@example.test"],
    }
    settings = runtime.settings
    days = {
        "history_days": settings.securepage.history_days,
        "mail_log_days": settings.admin.mail_log_days,
        "activity_days": settings.security.activity_days,
    }

    dry = run(test_env, "purge", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout) == {
        "dry_run": True,
        "secure_pages": {"ciphertexts": 1, "forgotten": 0, "days": days["history_days"]},
        "mail_log": {"entries": 1, "days": days["mail_log_days"]},
        "activity": {
            "events": 1,
            "sessions": 1,
            "devices": 2,  # a browser's and a mail program's network
            "lockouts": 1,
            "days": days["activity_days"],
        },
    }
    assert state(runtime) == before
    assert message_of(runtime, tokens["due"]).ciphertext is not None
    text = run(test_env, "purge", "--dry-run")
    assert text.exit_code == 0, text.output
    assert "1 secure-page message(s) would be purged" in text.output
    assert f"1 mail log entries older than {days['mail_log_days']} days would be purged" in (
        text.output
    )
    assert "1 audit events, 1 sessions, 2 devices, 1 lockouts would be purged" in text.output
    assert state(runtime) == before and run_events(runtime) == []  # nothing done, nothing said

    result = run(test_env, "purge", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {**json.loads(dry.stdout), "dry_run": False}
    assert state(runtime) == {
        "log": ["kept@x.test"],
        "logins": 1,
        "sessions": 1,
        "devices": ["198.51.100.0/24"],
        "clients": ["2001:db8:1:2::/64"],
        "lockouts": ["name:new@example.test"],
    }
    assert message_of(runtime, tokens["due"]).ciphertext is None
    assert message_of(runtime, tokens["kept"]).ciphertext is not None
    with db.read_only(runtime.sessions) as session:
        assert session.scalar(sa.select(AuditEvent.id).where(AuditEvent.action == "domain.add"))
    assert run_events(runtime) == [
        ("securepage.purge.run", "1 ciphertexts deleted, 0 purged messages forgotten"),
        ("maillog.purge.run", "1 mail log entries deleted"),
        ("activity.purge.run", "1 audit events, 1 sessions, 2 devices, 1 lockouts deleted"),
    ]

    again = run(test_env, "purge")  # idempotent, and said so
    assert again.exit_code == 0, again.output
    assert "purged 0 mail log entries" in again.output
    assert "purged 0 audit events, 0 sessions, 0 devices, 0 lockouts" in again.output
    assert len(run_events(runtime)) == 6


def test_the_cli_shows_progress_for_each_purge(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str]
) -> None:
    fill(runtime, utcnow())
    shown = run_in_terminal(test_env, "purge")
    for label, done in (
        ("purging secure pages", "1/1"),
        ("purging the mail log", "1/1"),
        ("purging activity", "5/5"),  # 1 event, 1 session, 2 devices, 1 lockout
    ):
        line = next((line for line in shown.splitlines() if label in line and done in line), None)
        assert line is not None, (label, done, shown)
    assert count(runtime, MailLogEntry) == 3  # the kept one, and the two pages' notices
    assert count(runtime, SecureMessage) == 2
    # Nothing left: empty bars, no error.
    assert "purged 0 mail log entries" in run_in_terminal(test_env, "purge")


def test_a_purged_mail_log_entry_leaves_the_wal(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str]
) -> None:
    """Threat: a copy of the data directory taken after the purge still holds the
    addresses of a mail log entry older than promised (in SQLite's WAL)."""
    if runtime.engine.dialect.name != "sqlite":
        pytest.skip("about SQLite's own files; PostgreSQL keeps no -wal file beside them")
    marker = "needle-7f3a9c@x.test"
    days = runtime.settings.admin.mail_log_days
    with db.transaction(runtime.sessions) as session:
        session.add(log_entry(marker, utcnow() - dt.timedelta(days=days, hours=1)))
    path = Path(str(runtime.engine.url.database))
    wal = path.with_name(path.name + "-wal")

    def on_disk() -> bytes:
        return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")

    serve = sqlite3.connect(path)  # a running server keeps the database open
    try:
        serve.execute("SELECT count(*) FROM mail_log").fetchone()
        assert marker.encode() in on_disk()
        purged = run(test_env, "purge")
        assert purged.exit_code == 0, purged.output
        assert count(runtime, MailLogEntry) == 0
        assert marker.encode() not in on_disk()
    finally:
        serve.close()
