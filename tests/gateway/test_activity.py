"""The activity log: what the account's page lists, and the purge after `activity_days`.

Threat: login history (addresses, browsers, typed names) kept forever.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import sqlalchemy as sa

from gateway import activity, audit, db, known_clients, lockout, login_alerts, purging, sessions
from gateway.models import (
    Account,
    AuditEvent,
    KnownDevice,
    KnownMailClient,
    LoginLockout,
    PortalSession,
)
from gateway.runtime import Runtime

NOW = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)
OLD = NOW - dt.timedelta(days=91)
RECENT = NOW - dt.timedelta(days=89)


def add_event(runtime: Runtime, action: str, at: dt.datetime, **kwargs: object) -> None:
    kwargs.setdefault("actor", "x")
    with db.transaction(runtime.sessions) as session:
        event = audit.record(session, action, **kwargs)  # type: ignore[arg-type]
        event.at = at


def forget_setup_events(runtime: Runtime) -> None:
    """The fixture's account.add/address.add rows carry today's date; start from none."""
    with db.transaction(runtime.sessions) as session:
        session.execute(sa.delete(AuditEvent))


def alice_id(runtime: Runtime) -> int:
    with runtime.sessions() as session:
        return session.scalars(
            sa.select(Account.id).where(Account.email == "alice@example.test")
        ).one()


def test_recent_lists_the_accounts_events_and_key_events_of_its_addresses(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    account_id = alice_id(runtime)
    forget_setup_events(runtime)
    add_event(runtime, "login", RECENT, account_id=account_id, ip="203.0.113.5")
    add_event(runtime, "key.rotate", RECENT, target="alice@example.test")
    add_event(runtime, "key.rotate", RECENT, target="bob@example.test")
    add_event(runtime, "login", OLD, account_id=account_id)
    add_event(runtime, "domain.add", RECENT, target="example.test")
    with runtime.sessions() as session:
        page = activity.recent(session, account_id, ["alice@example.test"], now=NOW, days=90)
    assert [(e.action, e.target) for e in page.events] == [
        ("key.rotate", "alice@example.test"),
        ("login", ""),
    ]
    assert (page.page, page.pages) == (1, 1)


def test_recent_pages(runtime: Runtime, mail_users: dict[str, str]) -> None:
    account_id = alice_id(runtime)
    forget_setup_events(runtime)
    for minute in range(5):
        add_event(runtime, "login", NOW - dt.timedelta(minutes=minute), account_id=account_id)
    with runtime.sessions() as session:
        second = activity.recent(session, account_id, [], now=NOW, days=90, page=2, per_page=2)
        past_end = activity.recent(session, account_id, [], now=NOW, days=90, page=9, per_page=2)
    assert (second.page, second.pages, len(second.events)) == (2, 3, 2)
    assert (past_end.page, len(past_end.events)) == (3, 1)


def test_purge_drops_old_personal_records_and_keeps_system_events(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    account_id = alice_id(runtime)
    forget_setup_events(runtime)
    add_event(runtime, "login", OLD, account_id=account_id)
    add_event(runtime, "login", OLD, actor="nobody@example.test", success=False)
    add_event(runtime, "smtp.auth", OLD, success=False)
    add_event(runtime, "domain.add", OLD, target="example.test")
    add_event(runtime, "login", RECENT, account_id=account_id)
    with db.transaction(runtime.sessions) as session:
        old = sessions.create(session, account_id, "n1", ip="", user_agent="", now=OLD)
        sessions.create(session, account_id, "n2", ip="", user_agent="", now=RECENT)
        sessions.end(session, account_id, old.id, reason="logout", now=OLD)
        login_alerts.remember_device(session, account_id, "203.0.113.5", "Firefox/1", OLD)
        login_alerts.remember_device(session, account_id, "198.51.100.5", "Firefox/1", RECENT)

    result = activity.purge(runtime.sessions, runtime.settings, NOW)
    assert (result.events, result.sessions, result.devices) == (3, 1, 1)
    with runtime.sessions() as session:
        left = session.scalars(sa.select(AuditEvent.action).order_by(AuditEvent.id)).all()
        assert "domain.add" in left and left.count("login") == 1
        assert session.scalar(sa.select(sa.func.count()).select_from(PortalSession)) == 1
        assert session.scalars(sa.select(KnownDevice.network)).all() == ["198.51.100.0/24"]


def test_purge_forgets_mail_networks_no_longer_known(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    """A mail program's network (gateway.known_clients) is kept `known_client_days`."""
    account_id = alice_id(runtime)
    days = runtime.settings.security.known_client_days
    with db.transaction(runtime.sessions) as session:
        for ip, seen in (
            ("203.0.113.5", NOW - dt.timedelta(days=days + 1)),
            ("2001:db8:1:2::5", NOW - dt.timedelta(days=days - 1)),
        ):
            written = known_clients.note_mail_login(
                session, runtime.settings.security, account_id, ip, seen
            )
            assert written is not None
    result = activity.purge(runtime.sessions, runtime.settings, NOW)
    assert result.devices == 1
    with db.read_only(runtime.sessions) as session:
        assert not known_clients.is_known_mail_client(
            session, runtime.settings.security, account_id, "203.0.113.5", NOW
        )
        # The IPv6 client is known by its /64.
        assert known_clients.is_known_mail_client(
            session, runtime.settings.security, account_id, "2001:db8:1:2:aaaa::1", NOW
        )
        assert not known_clients.is_known_mail_client(
            session, runtime.settings.security, account_id, "2001:db8:1:3::5", NOW
        )
    with runtime.sessions() as session:
        assert session.scalars(sa.select(KnownMailClient.network)).all() == ["2001:db8:1:2::/64"]


def test_the_serve_task_purges_and_stops(runtime: Runtime, mail_users: dict[str, str]) -> None:
    add_event(runtime, "login", OLD, account_id=alice_id(runtime))

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(activity.run_purge(runtime, stop, clock=lambda: NOW))
        for _ in range(200):
            await asyncio.sleep(0.02)
            with runtime.sessions() as session:
                if not session.scalar(
                    sa.select(sa.func.count())
                    .select_from(AuditEvent)
                    .where(AuditEvent.action == "login")
                ):
                    break
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(main())
    with runtime.sessions() as session:
        assert session.scalars(sa.select(AuditEvent.action)).all().count("login") == 0


def test_purge_of_more_rows_than_a_batch_commits_batch_by_batch(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    """Each kind of record goes in batches, one transaction each (gateway.purging): the
    audit log, portal sessions, devices (integer keys), mail networks (a two-column
    key) and lockout records (a text key) alike; the recent ones stay."""
    account_id = alice_id(runtime)
    forget_setup_events(runtime)
    days = runtime.settings.security.known_client_days
    stale_client = NOW - dt.timedelta(days=days + 1)
    forgotten = NOW - lockout.Policy.from_settings(runtime.settings.security).memory
    with db.transaction(runtime.sessions) as session:
        for n in range(5):
            audit.record(session, "login", actor="x", account_id=account_id).at = OLD
            sessions.create(session, account_id, f"old{n}", ip="", user_agent="", now=OLD)
            session.add(
                KnownDevice(
                    account_id=account_id,
                    network=f"10.{n}.0.0/24",
                    browser="Firefox",
                    first_seen_at=OLD,
                    last_seen_at=OLD,
                )
            )
            session.add(
                KnownMailClient(
                    account_id=account_id, network=f"10.0.0.{n}/32", last_seen_at=stale_client
                )
            )
            stale = forgotten - dt.timedelta(hours=1)
            session.add(
                LoginLockout(
                    key=f"name:n{n}@x.test",
                    failures=1,
                    window_started_at=stale,
                    locked_until=None,
                    last_failure_at=stale,
                )
            )
        audit.record(session, "login", actor="x", account_id=account_id).at = RECENT
        sessions.create(session, account_id, "recent", ip="", user_agent="", now=RECENT)
        session.add(KnownMailClient(account_id=account_id, network="10.0.0.9/32", last_seen_at=NOW))
        session.add(
            LoginLockout(
                key="name:recent@x.test",
                failures=1,
                window_started_at=NOW,
                locked_until=None,
                last_failure_at=NOW,
            )
        )
    committed: list[int] = []
    batches: list[int] = []

    def commit(_conn: sa.Connection) -> None:
        committed.append(1)

    sa.event.listen(runtime.engine, "commit", commit)
    try:
        result = activity.purge(
            runtime.sessions,
            runtime.settings,
            NOW,
            purging.Batches(size=2, progress=batches.append, pause=0),
        )
    finally:
        sa.event.remove(runtime.engine, "commit", commit)

    assert result == activity.PurgeResult(events=5, sessions=5, devices=10, lockouts=5)
    assert batches == [2, 2, 1] * 5  # five kinds, three batches each
    assert len(committed) == len(batches)
    with db.read_only(runtime.sessions) as session:
        for model, left in (
            (AuditEvent, 1),
            (PortalSession, 1),
            (KnownDevice, 0),
            (KnownMailClient, 1),
            (LoginLockout, 1),
        ):
            count = session.scalar(sa.select(sa.func.count()).select_from(model))
            assert (model.__name__, count) == (model.__name__, left)
