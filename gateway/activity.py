"""An account's recent activity (its rows of the audit log) and the purge that ends it.

The activity page lists what the audit log holds for the account: logins and
their failures, password and 2FA changes, app-password use, key events. After
`[security] activity_days` those rows go, together with everything else that
records where a person logged in from: ended portal sessions, devices not seen
since, mail programs' networks no longer known (gateway.known_clients), failed
logins for names that are no account, stale lockout records.
Admin and system events without an account (domains, relay, master key) stay.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from dataclasses import dataclass

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway import known_clients, lockout, login_alerts, outages, purging, sessions
from gateway.models import (
    AuditEvent,
    Base,
    KnownDevice,
    KnownMailClient,
    LoginLockout,
    PortalSession,
)
from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.timeutil import Clock, utcnow

log = logging.getLogger(__name__)

# Events without an account that still describe a person: a login attempt for a
# name that is no account carries the typed name, an IP and a browser.
PERSONAL_ACTIONS = ("login", "logout", "smtp.auth", "imap.auth")
PURGE_INTERVAL_SECONDS = 3600.0

# A table and the condition of its rows the purge deletes.
Stale = tuple[type[Base], sa.ColumnElement[bool]]


@dataclass(frozen=True)
class Page:
    events: list[AuditEvent]
    page: int
    pages: int


def recent(
    session: so.Session,
    account_id: int,
    addresses: list[str],
    *,
    now: dt.datetime,
    days: int,
    page: int = 1,
    per_page: int = 50,
) -> Page:
    """The account's events, newest first; key events are found by their address."""
    since = now - dt.timedelta(days=days)
    mine = AuditEvent.account_id == account_id
    if addresses:
        # Key events are logged by the keystore, which knows addresses, not accounts.
        mine = sa.or_(
            mine, sa.and_(AuditEvent.action.like("key.%"), AuditEvent.target.in_(addresses))
        )
    condition = sa.and_(mine, AuditEvent.at >= since)
    total = int(
        session.scalar(sa.select(sa.func.count()).select_from(AuditEvent).where(condition)) or 0
    )
    pages = max(1, -(-total // per_page))
    page = min(max(page, 1), pages)
    events = list(
        session.scalars(
            sa.select(AuditEvent)
            .where(condition)
            .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
            .offset((page - 1) * per_page)
            .limit(per_page)
        )
    )
    return Page(events=events, page=page, pages=pages)


@dataclass(frozen=True)
class PurgeResult:
    events: int
    sessions: int
    devices: int  # browsers' (gateway.login_alerts) and mail programs' networks
    lockouts: int

    @property
    def total(self) -> int:
        return self.events + self.sessions + self.devices + self.lockouts


def _stale(settings: Settings, now: dt.datetime) -> dict[str, list[Stale]]:
    """What goes, by kind of `PurgeResult`: each table with the condition of its rows."""
    cutoff = now - dt.timedelta(days=settings.security.activity_days)
    personal = sa.and_(
        AuditEvent.at < cutoff,
        sa.or_(AuditEvent.account_id.is_not(None), AuditEvent.action.in_(PERSONAL_ACTIONS)),
    )
    policy = lockout.Policy.from_settings(settings.security)
    return {
        "events": [(AuditEvent, personal)],
        "sessions": [(PortalSession, sessions.stale(cutoff))],
        "devices": [
            (KnownDevice, login_alerts.unseen_since(cutoff)),
            (KnownMailClient, known_clients.stale(settings.security, now)),
        ],
        "lockouts": [(LoginLockout, lockout.forgotten(now, policy))],
    }


def purge(
    factory: so.sessionmaker[so.Session],
    settings: Settings,
    now: dt.datetime,
    batches: purging.Batches | None = None,
) -> PurgeResult:
    """Delete what records where a person logged in from, once older than
    `[security] activity_days`: each kind in short transactions of its own
    (gateway.purging), so a long backlog never holds the write lock for long."""
    return PurgeResult(
        **{
            kind: sum(
                purging.delete_in_batches(factory, model, condition, batches)
                for model, condition in tables
            )
            for kind, tables in _stale(settings, now).items()
        }
    )


def pending(
    factory: so.sessionmaker[so.Session], settings: Settings, now: dt.datetime
) -> PurgeResult:
    """How many rows of each kind `purge` would delete now (for a dry run)."""
    return PurgeResult(
        **{
            kind: sum(purging.count(factory, model, condition) for model, condition in tables)
            for kind, tables in _stale(settings, now).items()
        }
    )


async def run_purge(
    runtime: Runtime,
    stop: asyncio.Event,
    clock: Clock = utcnow,
    interval: float = PURGE_INTERVAL_SECONDS,
) -> None:
    """Purge now and then every `interval` seconds until `stop` is set (for `sealgate serve`)."""

    def once() -> PurgeResult:
        batches = purging.Batches(stop=stop.is_set)  # a stopping serve waits for one batch
        result = purge(runtime.sessions, runtime.settings, clock(), batches)
        purging.reclaim(runtime.sessions, "activity purge")
        return result

    while not stop.is_set():
        try:
            result = await asyncio.to_thread(once)
            if result.events or result.sessions or result.devices:
                log.info(
                    "purged activity older than %d days: %d events, %d sessions, %d devices",
                    runtime.settings.security.activity_days,
                    result.events,
                    result.sessions,
                    result.devices,
                )
        except Exception as exc:  # noqa: BLE001  (a failed purge must not stop the server)
            if outages.report(exc) is None:  # an outage is said once, not per attempt
                log.error("activity purge failed: %s", type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
