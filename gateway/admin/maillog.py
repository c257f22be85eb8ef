"""The mail log: per message and recipient, the handling and where delivery stands.

Like the reference host's log of the last 20 days. The pipeline's store step
(and the MX listener, for mail from outside) writes one entry per recipient:
the handling (pgp, secure-page, plain, passthrough) and the status
("delivered" to a hosted mailbox, "queued" for the relay). The relay updates it
(sent, deferred, bounced) with the smarthost's last answer, and `sealgate
serve` purges entries older than `[admin] mail_log_days`. No body and no secret
is kept: addresses, the Message-ID, the handling and the smarthost's one-line
reply only.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway import driversql, dsn, outages, purging
from gateway.admin import Page, clamp_page
from gateway.models import MailLogEntry
from gateway.pipeline.passthrough import is_already_encrypted
from gateway.timeutil import Clock, utcnow

if TYPE_CHECKING:
    from gateway.pipeline.context import Submission
    from gateway.runtime import Runtime

log = logging.getLogger(__name__)
_INSERT_MAIL_LOG = sa.insert(cast(sa.Table, MailLogEntry.__table__))

DELIVERED = "delivered"
QUEUED = "queued"
SENT = "sent"
DEFERRED = "deferred"
BOUNCED = "bounced"
GIVEN_UP = "given up"
DELETED = "deleted"
MAX_REPLY = 500
HEADER_SCAN = 64 * 1024
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*([^\r\n]{1,900})", re.IGNORECASE | re.MULTILINE)


def message_id_of(raw: bytes) -> str:
    """The Message-ID header of `raw` (bounded scan of the header block), or ""."""
    head = raw[:HEADER_SCAN]
    end = head.find(b"\r\n\r\n")
    if end < 0:
        end = head.find(b"\n\n")
    match = _MESSAGE_ID.search(head if end < 0 else head[:end])
    if match is None:
        return ""
    return dsn.clean(match.group(1).decode("ascii", "replace"), 900)


def submission_rows(submission: Submission) -> list[dict[str, object]]:
    """One entry per recipient of a submitted message, for `insert` in its final
    transaction (with those of the other messages committed alongside)."""
    message_id = message_id_of(submission.raw)
    hosted = set(submission.hosted)
    return [
        {
            "queue_id": submission.queue_id,
            "message_id": message_id,
            "sender": submission.envelope_from or submission.sender.address,
            "recipient": handled.recipient,
            "handling": handled.method,
            "status": DELIVERED if handled.recipient in hosted else QUEUED,
            "last_reply": "",
            "created_at": submission.received_at,
            "updated_at": submission.received_at,
        }
        for handled in submission.handling
    ]


def handled(session: so.Session, queue_ids: Collection[str]) -> dict[str, tuple[str, ...]]:
    """Which of `queue_ids` were committed, each with its recipients' handlings.

    A submission's entries are written in the transaction that stores the message
    (`gateway.pipeline.deliver.store_all`), one per recipient: entries under a queue
    id mean its message is on disk. The SMTP server asks this when a worker process
    died before it answered (gateway.workers), through the (queue_id, recipient) index.
    """
    found: dict[str, list[str]] = {}
    if queue_ids:
        rows = session.execute(
            sa.select(MailLogEntry.queue_id, MailLogEntry.handling)
            .where(MailLogEntry.queue_id.in_(sorted(queue_ids)))
            .order_by(MailLogEntry.id)
        )
        for queue_id, handling in rows:
            found.setdefault(queue_id, []).append(handling)
    return {queue_id: tuple(methods) for queue_id, methods in found.items()}


def insert(conn: sa.Connection, rows: list[dict[str, object]]) -> None:
    if rows:  # one INSERT for every recipient, through the driver (gateway.driversql)
        driversql.run(conn, _INSERT_MAIL_LOG, rows, columns=tuple(rows[0]))


@dataclass(frozen=True)
class InboundMessage:
    """What the mail log keeps of one message from outside, the same for each of its
    hosted recipients: read once per message (`inbound_message`), before the
    transaction that stores it, and not once per copy inside it."""

    queue_id: str
    message_id: str
    sender: str
    handling: str


def inbound_message(queue_id: str, raw: bytes, *, envelope_from: str) -> InboundMessage:
    """The mail log's view of `raw`; its structural "already encrypted" check parses the
    whole message (gateway.pipeline.passthrough), so it runs here, once."""
    return InboundMessage(
        queue_id=queue_id,
        message_id=message_id_of(raw),
        sender=envelope_from[:320],
        handling="passthrough" if is_already_encrypted(raw) else "plain",
    )


def record_inbound(
    session: so.Session, message: InboundMessage, *, recipient: str, now: dt.datetime
) -> None:
    """Mail from outside (the MX listener), stored as it came for a hosted recipient."""
    session.add(
        MailLogEntry(
            queue_id=message.queue_id,
            message_id=message.message_id,
            sender=message.sender,
            recipient=recipient[:320],
            handling=message.handling,
            status=DELIVERED,
            last_reply="",
            created_at=now,
            updated_at=now,
        )
    )


def record_relay(
    session: so.Session, queue_id: str, recipient: str, status: str, reply: str, now: dt.datetime
) -> None:
    """The relay's outcome for one recipient (no entry, e.g. purged already: nothing to do)."""
    session.execute(
        sa.update(MailLogEntry)
        .where(MailLogEntry.queue_id == queue_id, MailLogEntry.recipient == recipient)
        .values(status=status, last_reply=dsn.clean(reply, MAX_REPLY), updated_at=now)
    )


@dataclass(frozen=True)
class MailLogRow:
    queue_id: str
    message_id: str
    sender: str
    recipient: str
    handling: str
    status: str
    last_reply: str
    created_at: dt.datetime
    updated_at: dt.datetime

    def as_dict(self) -> dict[str, object]:
        return {
            "queue_id": self.queue_id,
            "message_id": self.message_id,
            "sender": self.sender,
            "recipient": self.recipient,
            "handling": self.handling,
            "status": self.status,
            "last_reply": self.last_reply,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


def _row(entry: MailLogEntry) -> MailLogRow:
    return MailLogRow(
        entry.queue_id,
        entry.message_id,
        entry.sender,
        entry.recipient,
        entry.handling,
        entry.status,
        entry.last_reply,
        entry.created_at,
        entry.updated_at,
    )


def search(
    session: so.Session,
    page: int,
    per_page: int,
    *,
    address: str = "",
    message: str = "",
) -> Page[MailLogRow]:
    """Entries, newest first; `address` matches sender or recipient, `message` a queue id
    or a Message-ID."""
    parts: list[sa.ColumnElement[bool]] = []
    if address.strip():
        needle = address.strip().lower()[:320]
        parts.append(sa.or_(MailLogEntry.recipient == needle, MailLogEntry.sender == needle))
    if message.strip():
        ident = message.strip()[:998]
        parts.append(sa.or_(MailLogEntry.queue_id == ident, MailLogEntry.message_id == ident))
    condition = sa.and_(sa.true(), *parts)
    total = int(
        session.scalar(sa.select(sa.func.count()).select_from(MailLogEntry).where(condition)) or 0
    )
    page = clamp_page(page, per_page, total)
    rows = session.scalars(
        sa.select(MailLogEntry)
        .where(condition)
        .order_by(MailLogEntry.created_at.desc(), MailLogEntry.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    return Page([_row(r) for r in rows], page, per_page, total)


def purge(
    sessions: so.sessionmaker[so.Session],
    now: dt.datetime,
    days: int,
    batches: purging.Batches | None = None,
) -> int:
    """Delete entries older than `days`, in short transactions (gateway.purging); how
    many went."""
    return purging.delete_in_batches(sessions, MailLogEntry, _expired(now, days), batches)


def pending(sessions: so.sessionmaker[so.Session], now: dt.datetime, days: int) -> int:
    """How many entries `purge` would delete now."""
    return purging.count(sessions, MailLogEntry, _expired(now, days))


def _expired(now: dt.datetime, days: int) -> sa.ColumnElement[bool]:
    return MailLogEntry.created_at < now - dt.timedelta(days=days)


async def run_purge(runtime: Runtime, stop: asyncio.Event, clock: Clock = utcnow) -> None:
    """Purge now and then every `[admin] mail_log_purge_interval` (a task of `sealgate serve`)."""
    admin = runtime.settings.admin

    def once() -> int:
        batches = purging.Batches(stop=stop.is_set)  # a stopping serve waits for one batch
        purged = purge(runtime.sessions, clock(), admin.mail_log_days, batches)
        purging.reclaim(runtime.sessions, "mail log purge")
        return purged

    while not stop.is_set():
        try:
            purged = await asyncio.to_thread(once)
            if purged:
                log.info(
                    "purged %d mail log entries older than %d days", purged, admin.mail_log_days
                )
        except Exception as exc:  # noqa: BLE001  (a failed purge must not stop the server)
            if outages.report(exc) is None:  # an outage is said once, not per attempt
                log.error("mail log purge failed: %s", type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), admin.mail_log_purge_interval)
