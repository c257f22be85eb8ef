"""The outbound queue: one row per external recipient, durable until the relay is done with it."""

from __future__ import annotations

import datetime as dt

import sqlalchemy.orm as so

from gateway.models import QueueItem


def enqueue(
    session: so.Session,
    *,
    queue_id: str,
    mail_from: str,
    rcpt_to: str,
    raw: bytes,
    now: dt.datetime,
) -> QueueItem:
    """Add a row to the caller's transaction; it is sent once that transaction commits."""
    item = QueueItem(
        queue_id=queue_id,
        mail_from=mail_from,
        rcpt_to=rcpt_to,
        raw=raw,
        status="queued",
        attempts=0,
        created_at=now,
        next_attempt_at=now,
    )
    session.add(item)
    return item
