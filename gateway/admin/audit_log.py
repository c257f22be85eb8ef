"""Reading the audit log: filters, paging and CSV export for the console and `sealgate audit`."""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway.admin import Page, clamp_page
from gateway.models import AuditEvent

MAX_FILTER = 320
MAX_EXPORT_ROWS = 100_000
CSV_COLUMNS = ("at", "actor", "action", "target", "success", "ip", "user_agent", "detail")


@dataclass(frozen=True)
class AuditFilter:
    """Each field narrows the list; empty fields do not. `address` matches target or actor."""

    actor: str = ""
    action: str = ""
    address: str = ""
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    def condition(self) -> sa.ColumnElement[bool]:
        parts: list[sa.ColumnElement[bool]] = []
        if self.actor:
            parts.append(AuditEvent.actor == self.actor.strip().lower()[:MAX_FILTER])
        if self.action:
            action = self.action.strip()[:64]
            # "key" finds key.rotate, key.revoke, ...; "key.rotate" finds exactly that; a
            # typed `_` or `%` is that character, not a LIKE wildcard.
            parts.append(
                sa.or_(
                    AuditEvent.action == action,
                    AuditEvent.action.startswith(action + ".", autoescape=True),
                )
            )
        if self.address:
            needle = self.address.strip().lower()[:MAX_FILTER]
            parts.append(sa.or_(AuditEvent.target == needle, AuditEvent.actor == needle))
        if self.since is not None:
            parts.append(AuditEvent.at >= self.since)
        if self.until is not None:
            parts.append(AuditEvent.at < self.until)
        return sa.and_(sa.true(), *parts)


def query(session: so.Session, filters: AuditFilter, page: int, per_page: int) -> Page[AuditEvent]:
    """Newest first."""
    condition = filters.condition()
    total = int(
        session.scalar(sa.select(sa.func.count()).select_from(AuditEvent).where(condition)) or 0
    )
    page = clamp_page(page, per_page, total)
    rows = session.scalars(
        sa.select(AuditEvent)
        .where(condition)
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    return Page(rows, page, per_page, total)


def as_dict(event: AuditEvent) -> dict[str, object]:
    return {
        "at": event.at.isoformat(),
        "actor": event.actor,
        "action": event.action,
        "target": event.target,
        "success": event.success,
        "ip": event.ip,
        "user_agent": event.user_agent,
        "detail": event.detail,
    }


def _cell(value: object) -> str:
    """A CSV cell a spreadsheet will not run as a formula (actors and targets come from outside)."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def export_csv(session: so.Session, filters: AuditFilter) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    rows = session.scalars(
        sa.select(AuditEvent)
        .where(filters.condition())
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        .limit(MAX_EXPORT_ROWS)
    )
    for event in rows:
        data = as_dict(event)
        writer.writerow([_cell(data[c]) for c in CSV_COLUMNS])
    return out.getvalue()


def parse_day(value: str, *, end: bool = False) -> dt.datetime | None:
    """'2026-12-02' as the start of that UTC day (the day after, for an end); None if empty.

    Raises ValueError with a clear text for anything else.
    """
    text = value.strip()
    if not text:
        return None
    try:
        day = dt.date.fromisoformat(text[:10])
    except ValueError:
        raise ValueError(f"not a date (YYYY-MM-DD): {text[:20]!r}") from None
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    if not end:
        return start
    if day == dt.date.max:  # the day after 9999-12-31 is past what a datetime holds
        return None  # no end at all
    return start + dt.timedelta(days=1)


def parse_days(
    since: str, until: str, *, names: tuple[str, str] = ("since", "until")
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """Both ends of a day range, as `parse_day` reads them.

    A start after the end matches nothing, which looks like an empty log rather than
    a typo: it is refused, naming both fields (`names`: as the caller spells them).
    """
    start, end = parse_day(since), parse_day(until, end=True)
    if start is not None and end is not None and start >= end:
        raise ValueError(
            f"{names[0]} {since.strip()[:10]} is later than {names[1]} {until.strip()[:10]}:"
            " no event can match"
        )
    return start, end
