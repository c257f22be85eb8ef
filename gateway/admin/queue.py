"""The outbound queue as an admin handles it: list, retry now, give up (bounce to the sender)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy.orm as so

from gateway import dsn
from gateway import queue as outbound
from gateway.admin import Actor, AdminError, Page, clamp_page, maillog
from gateway.queue import ClaimedItem, QueueError
from keystore import seal
from keystore.masterkey import MasterKeyRing

GIVE_UP_STATUS = "5.0.0"
GIVE_UP_TEXT = "delivery given up by the administrator"


@dataclass(frozen=True)
class QueueRow:
    id: int
    queue_id: str
    mail_from: str
    rcpt_to: str
    status: str
    attempts: int
    created_at: dt.datetime
    next_attempt_at: dt.datetime
    last_error: str
    in_flight: bool
    size: int
    # Why its sealed bytes do not open with the ring ("" if they do, or no ring was given).
    unopenable: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "queue_id": self.queue_id,
            "mail_from": self.mail_from,
            "rcpt_to": self.rcpt_to,
            "status": self.status,
            "attempts": self.attempts,
            "created_at": self.created_at.isoformat(),
            "next_attempt_at": self.next_attempt_at.isoformat(),
            "last_error": self.last_error,
            "in_flight": self.in_flight,
            "size": self.size,
            "unopenable": self.unopenable,
        }


def list_rows(
    session: so.Session,
    now: dt.datetime,
    page: int,
    per_page: int,
    ring: MasterKeyRing | None = None,
) -> Page[QueueRow]:
    """One page of the queue; with `ring`, each sealed row says if it cannot be opened."""
    items = outbound.list_items(session)
    page = clamp_page(page, per_page, len(items))
    chosen = items[(page - 1) * per_page : page * per_page]
    rows = [
        QueueRow(
            i.id,
            i.queue_id,
            i.mail_from,
            i.rcpt_to,
            i.status,
            i.attempts,
            i.created_at,
            i.next_attempt_at,
            i.last_error,
            outbound.in_flight(i, now),
            len(i.raw),
            outbound.why_unopenable(ring, i) if ring is not None else "",
        )
        for i in chosen
    ]
    return Page(rows, page, per_page, len(items))


def retry(session: so.Session, ident: str, *, actor: Actor, now: dt.datetime) -> int:
    """Make the rows of queue id (or row number) `ident` due at once; how many."""
    try:
        rows = outbound.retry_now(session, ident.strip()[:40], now=now, actor=actor.name)
    except QueueError as exc:
        raise AdminError(str(exc)) from None
    actor.stamp(session)
    return len(rows)


def give_up(
    session: so.Session,
    ident: str,
    *,
    actor: Actor,
    now: dt.datetime,
    ring: MasterKeyRing,
    reporting_mta: str,
) -> dict[str, str]:
    """Stop trying: each row is removed and bounced to its (hosted) sender, as the relay does
    at the maximum age. Returns recipient → where the bounce went."""
    try:
        rows = outbound.find(session, ident.strip()[:40])
    except QueueError as exc:
        raise AdminError(str(exc)) from None
    busy = [r for r in rows if outbound.in_flight(r, now)]
    if busy:
        raise AdminError(
            f"queue {busy[0].queue_id} to {busy[0].rcpt_to} is being sent right now;"
            " try again in a moment"
        )
    outcome: dict[str, str] = {}
    for row in rows:
        unopenable = ""
        try:
            raw = outbound.open_raw(ring, row)
        except seal.SealedRecordError:
            # The bounce then says the content is lost, and carries what is in clear.
            raw, unopenable = b"", outbound.why_unopenable(ring, row) or "it does not open"
        # Lease the row to ourselves, so the relay's own give_up (which checks the
        # lease) removes exactly this row, in this transaction.
        lease = now + dt.timedelta(minutes=5)
        row.status, row.leased_until = outbound.SENDING, lease
        session.flush()
        item = ClaimedItem(
            id=row.id,
            queue_id=row.queue_id,
            mail_from=row.mail_from,
            rcpt_to=row.rcpt_to,
            raw=raw,
            attempts=row.attempts,
            created_at=row.created_at,
            lease=lease,
            unopenable=unopenable,
        )
        reason = row.last_error or GIVE_UP_TEXT
        failure = dsn.Failure(GIVE_UP_STATUS, "X-Sealgate", f"{GIVE_UP_TEXT}; last error: {reason}")
        where = outbound.give_up(session, item, failure, now=now, reporting_mta=reporting_mta)
        outcome[row.rcpt_to] = where or "unchanged"
        maillog.record_relay(session, row.queue_id, row.rcpt_to, maillog.GIVEN_UP, reason, now)
        actor.record(
            session,
            "queue.give_up",
            target=row.rcpt_to,
            detail=f"queue {row.queue_id}; bounce {outcome[row.rcpt_to]}",
        )
    actor.stamp(session)
    return outcome
