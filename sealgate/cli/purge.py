"""`sealgate purge`: run now every purge `sealgate serve` runs on its own schedule.

Secure pages (ciphertext nobody can open any more, then the history after
`[securepage] history_days`), the mail log (after `[admin] mail_log_days`) and the
activity (audit events, portal sessions, devices, mail networks and lockout
records, after `[security] activity_days`): for a server that is not running, or
to purge at once after a retention setting was lowered. Each deletes in batches
(gateway.purging), and SQLite's WAL is truncated after each.
"""

from __future__ import annotations

import datetime as dt
import sys
from typing import TYPE_CHECKING, Any

import click

from sealgate.cli.base import CLI_ACTOR, CliState, cli, emit, json_option, pass_state

if TYPE_CHECKING:
    from gateway.activity import PurgeResult as ActivityCounts
    from gateway.runtime import Runtime

# Prefix-matched by `sealgate audit list --action securepage.purge`, with the batches.
ACTION_RUN = "securepage.purge.run"
ACTION_MAIL_LOG = "maillog.purge.run"
ACTION_ACTIVITY = "activity.purge.run"


@cli.command()
@click.option("--dry-run", is_flag=True, help="Only say how many rows each purge would delete.")
@json_option
@pass_state
def purge(state: CliState, dry_run: bool, as_json: bool) -> None:
    """Delete what serve's purges delete: expired secure pages, old mail log entries, and
    old activity (audit events, sessions, devices, mail networks, lockout records).

    Purged secure pages are forgotten after `[securepage] history_days`, mail log
    entries go after `[admin] mail_log_days`, activity after `[security] activity_days`.
    """
    from gateway.activity import pending as activity_pending
    from gateway.admin import maillog
    from gateway.securepage import purge as securepage_purge
    from gateway.timeutil import utcnow

    runtime = state.require_initialised()
    settings = runtime.settings
    now = utcnow()
    due = securepage_purge.pending(runtime, now)
    forgettable = securepage_purge.pending_history(runtime, now)
    log_due = maillog.pending(runtime.sessions, now, settings.admin.mail_log_days)
    activity_due = activity_pending(runtime.sessions, settings, now)
    if dry_run:
        emit(
            as_json,
            _report(runtime, True, due, forgettable, log_due, activity_due),
            f"{due} secure-page message(s) would be purged\n"
            f"{forgettable} purged secure-page message(s) would be forgotten\n"
            f"{log_due} mail log entries older than {settings.admin.mail_log_days} days"
            " would be purged\n"
            f"activity older than {settings.security.activity_days} days:"
            f" {_activity(activity_due)} would be purged",
        )
        return
    # With --json the bars go to stderr: stdout holds the JSON alone.
    bars = sys.stderr if as_json else None

    # Both secure-page steps count on one bar: the ciphertexts due, then the rows to forget.
    with click.progressbar(
        length=due + forgettable, label="purging secure pages", show_pos=True, file=bars
    ) as bar:
        pages = securepage_purge.purge(runtime, now, actor=CLI_ACTOR, progress=bar.update)
    _record(
        state,
        ACTION_RUN,
        f"{pages.ciphertexts} ciphertexts deleted, {pages.forgotten} purged messages forgotten",
    )
    log_purged = _purge_mail_log(runtime, now, log_due, bars)
    _record(state, ACTION_MAIL_LOG, f"{log_purged} mail log entries deleted")
    activity = _purge_activity(runtime, now, activity_due.total, bars)
    _record(state, ACTION_ACTIVITY, f"{_activity(activity)} deleted")
    emit(
        as_json,
        _report(runtime, False, pages.ciphertexts, pages.forgotten, log_purged, activity),
        f"purged {pages.ciphertexts} secure-page message(s);"
        f" forgot {pages.forgotten} purged more than {settings.securepage.history_days}"
        " days ago\n"
        f"purged {log_purged} mail log entries older than {settings.admin.mail_log_days}"
        " days\n"
        f"purged {_activity(activity)} older than {settings.security.activity_days} days",
    )


def _purge_mail_log(runtime: Runtime, now: dt.datetime, due: int, bars: Any) -> int:
    from gateway import purging
    from gateway.admin import maillog

    days = runtime.settings.admin.mail_log_days
    with click.progressbar(
        length=due, label="purging the mail log", show_pos=True, file=bars
    ) as bar:
        purged = maillog.purge(runtime.sessions, now, days, purging.Batches(progress=bar.update))
    purging.reclaim(runtime.sessions, "mail log purge")
    return purged


def _purge_activity(runtime: Runtime, now: dt.datetime, due: int, bars: Any) -> ActivityCounts:
    from gateway import activity, purging

    with click.progressbar(length=due, label="purging activity", show_pos=True, file=bars) as bar:
        result = activity.purge(
            runtime.sessions, runtime.settings, now, purging.Batches(progress=bar.update)
        )
    purging.reclaim(runtime.sessions, "activity purge")
    return result


def _record(state: CliState, action: str, detail: str) -> None:
    """The batches' events (secure pages) say what each deleted; this one that an admin
    ran the purge, and what it removed in all, also when that was nothing."""
    from gateway import audit

    with state.transaction() as session:
        audit.record(session, action, actor=CLI_ACTOR, detail=detail)


def _activity(counts: ActivityCounts) -> str:
    return (
        f"{counts.events} audit events, {counts.sessions} sessions,"
        f" {counts.devices} devices, {counts.lockouts} lockouts"
    )


def _report(
    runtime: Runtime,
    dry_run: bool,
    ciphertexts: int,
    forgotten: int,
    mail_log: int,
    activity: ActivityCounts,
) -> dict[str, Any]:
    """The JSON answer: the same shape for a dry run (what would go) and a purge (what went)."""
    settings = runtime.settings
    return {
        "dry_run": dry_run,
        "secure_pages": {
            "ciphertexts": ciphertexts,
            "forgotten": forgotten,
            "days": settings.securepage.history_days,
        },
        "mail_log": {"entries": mail_log, "days": settings.admin.mail_log_days},
        "activity": {
            "events": activity.events,
            "sessions": activity.sessions,
            "devices": activity.devices,
            "lockouts": activity.lockouts,
            "days": settings.security.activity_days,
        },
    }
