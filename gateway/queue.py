"""The outbound queue: one row per external recipient, durable until the relay is done with it.

A row's life: `enqueue` (in the submitting transaction) → `claim` (a worker leases
it) → `mark_sent` | `defer` | `give_up` | `release`. Claiming is exclusive: on
PostgreSQL the due rows are locked with `FOR UPDATE SKIP LOCKED` and leased in
the same transaction; on SQLite every transaction starts with `BEGIN IMMEDIATE`
(gateway/db.py), so the select and update already run alone. A worker that dies
leaves a lease that runs out, and the row is claimed again.

Sent rows are deleted, not kept as tombstones: the table stays as small as the
backlog (the claim query stays cheap), and a delivered message's bytes do not
linger on the server. The log line that names the queue id and recipient is
the delivery record.

A row that carries a secret (a secure-page notification holds its link) is
sealed at rest under the master key (`seal_raw`); `claim` hands the relay the
bytes to send, opened, and a master-key rotation moves such rows with
`rewrap_sealed`. A sealed row the ring cannot open (its master-key version was
destroyed, or the ring came from an older backup) is claimed all the same, with
no bytes and the reason (`ClaimedItem.unopenable`): the relay retries it like a
failed delivery, in case the admin restores the ring, and bounces it at the
queue's maximum age with what the row holds in clear (envelope, queue id, dates).

Every function takes the caller's session and `now`; the caller commits.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway import accounts, audit, dsn, mailbox
from gateway.admin import valid_id
from gateway.inflight import InFlightBudget, Reservation
from gateway.models import MailLogEntry, QueueItem
from gateway.settings import RelaySettings
from keystore import leftbehind, seal
from keystore.leftbehind import LeftBehind, Rewrapped
from keystore.masterkey import MasterKeyRing

SEAL_PURPOSE = "outbound queue"
QUEUED = "queued"
SENDING = "sending"
RELAY_ACTOR = "relay"
MAX_ERROR_CHARS = 1000


class QueueError(ValueError):
    """A queue request that cannot be carried out; the text is safe to show."""


@dataclass(frozen=True)
class ClaimedItem:
    """A leased row, detached from any session so the relay can carry it across threads.

    `lease` is the `leased_until` value this claim wrote: finishing a row checks it,
    so a worker whose lease ran out cannot overwrite the next worker's outcome.
    `unopenable` says why a sealed row's bytes could not be opened ("" when they
    were); `raw` is then empty and the row must not be sent.
    """

    id: int
    queue_id: str
    mail_from: str
    rcpt_to: str
    raw: bytes = dataclasses.field(repr=False)
    attempts: int
    created_at: dt.datetime
    lease: dt.datetime
    unopenable: str = ""
    # Its size held in the in-flight budget until the relay is done with it.
    hold: Reservation | None = dataclasses.field(default=None, repr=False, compare=False)


def _binding(queue_id: str, rcpt_to: str) -> bytes:
    return f"{queue_id}\0{rcpt_to}".encode()


def seal_raw(ring: MasterKeyRing, raw: bytes, *, queue_id: str, rcpt_to: str) -> bytes:
    """`raw` sealed for a queue row (one recipient of one message); enqueue it with `sealed`."""
    return seal.seal(ring, raw, purpose=SEAL_PURPOSE, binding=_binding(queue_id, rcpt_to))


def open_raw(ring: MasterKeyRing, row: QueueItem) -> bytes:
    """The bytes to send for a row, opened if sealed; `SealedRecordError` if they do not open."""
    if not row.sealed:
        return row.raw
    return seal.open_sealed(
        ring, row.raw, purpose=SEAL_PURPOSE, binding=_binding(row.queue_id, row.rcpt_to)
    )


def why_unopenable(ring: MasterKeyRing | None, row: QueueItem) -> str:
    """Why a sealed row does not open with `ring`, for the admin, the log and the bounce.

    Names the master-key version (no secret) so the admin knows which ring would
    open it; "" when the row is not sealed or opens.
    """
    if not row.sealed:
        return ""
    if ring is None:
        return "sealed at rest, and no master key ring is loaded"
    try:
        version = seal.blob_version(row.raw)
    except seal.SealedRecordError:
        return "sealed at rest, but the sealed record is damaged"
    if version in ring.destroyed_versions:
        return f"sealed at rest under master-key version {version}, which was destroyed"
    if version not in ring.keys:
        return (
            f"sealed at rest under master-key version {version}, which the key ring does not hold"
        )
    try:
        open_raw(ring, row)
    except seal.SealedRecordError:
        return (
            f"sealed at rest under master-key version {version}, but it does not open"
            " (damaged, or not sealed for this row)"
        )
    return ""


def rewrap_sealed(session: so.Session, ring: MasterKeyRing) -> Rewrapped:
    """Re-seal every sealed row under the ring's primary version.

    A row that does not open (its version destroyed) stays as it is and is named
    in the result: it is lost either way, and the relay bounces it at the queue's
    maximum age; failing here would stop every later master-key rotation until then.
    """
    moved = 0
    left: list[LeftBehind] = []
    rows = session.scalars(
        sa.select(QueueItem).where(QueueItem.sealed.is_(True)).order_by(QueueItem.id)
    )
    for row in rows:
        version: int | None = None
        try:
            version = seal.blob_version(row.raw)
            if version == ring.primary:
                continue
            binding = _binding(row.queue_id, row.rcpt_to)
            row.raw = seal.reseal(ring, row.raw, purpose=SEAL_PURPOSE, binding=binding)
        except seal.SealedRecordError:
            left.append(
                LeftBehind(
                    f"the queued notification {row.queue_id} to {row.rcpt_to}",
                    leftbehind.why_unopenable(ring, version),
                    "it is never sent; the relay bounces it to its sender at the queue's"
                    " maximum age ([relay] max_age)",
                )
            )
            continue
        moved += 1
    return Rewrapped(moved, tuple(left))


def enqueue(
    session: so.Session,
    *,
    queue_id: str,
    mail_from: str,
    rcpt_to: str,
    raw: bytes,
    now: dt.datetime,
    sealed: bool = False,
) -> QueueItem:
    """Add a row to the caller's transaction; it is sent once that transaction commits."""
    item = QueueItem(
        **item_values(
            queue_id=queue_id, mail_from=mail_from, rcpt_to=rcpt_to, raw=raw, now=now, sealed=sealed
        )
    )
    session.add(item)
    return item


def item_values(
    *, queue_id: str, mail_from: str, rcpt_to: str, raw: bytes, now: dt.datetime, sealed: bool
) -> dict[str, Any]:
    """The columns of a new queue row (for `enqueue` and bulk inserts)."""
    return {
        "queue_id": queue_id,
        "mail_from": mail_from,
        "rcpt_to": rcpt_to,
        "raw": raw,
        "sealed": sealed,
        "status": QUEUED,
        "attempts": 0,
        "created_at": now,
        "next_attempt_at": now,
    }


def _claimable(now: dt.datetime) -> sa.ColumnElement[bool]:
    return sa.and_(
        QueueItem.status.in_((QUEUED, SENDING)),
        QueueItem.next_attempt_at <= now,
        sa.or_(QueueItem.leased_until.is_(None), QueueItem.leased_until <= now),
    )


def claim(
    session: so.Session,
    *,
    now: dt.datetime,
    lease_seconds: float,
    limit: int,
    ring: MasterKeyRing | None = None,
    budget: InFlightBudget | None = None,
    created_before: dt.datetime | None = None,
) -> list[ClaimedItem]:
    """Lease up to `limit` due rows to the caller; commit promptly so others skip them.

    Sealed rows are opened with `ring`; one that does not open (no ring, or its
    master-key version is gone) is claimed too, with no bytes and the reason in
    `unopenable` (and `last_error`): left unclaimed, it would never reach the
    maximum age that bounces it.
    With `budget`, each row's size is reserved in it before its bytes are loaded
    (the item's `hold`, for the caller to release); rows past the budget stay
    queued for a later claim. With `created_before`, only rows queued by then
    (a relay with no smarthost claims only those past the maximum age, to bounce).
    """
    query = (
        sa.select(QueueItem)
        .where(_claimable(now))
        .where(sa.true() if created_before is None else QueueItem.created_at <= created_before)
        .order_by(QueueItem.next_attempt_at, QueueItem.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if budget is not None:
        query = query.options(so.defer(QueueItem.raw))
    rows = session.scalars(query).all()
    sizes: dict[int, int] = {}
    if budget is not None and rows:
        sizes = {
            row_id: int(size or 0)
            for row_id, size in session.execute(
                sa.select(QueueItem.id, sa.func.length(QueueItem.raw)).where(
                    QueueItem.id.in_([row.id for row in rows])
                )
            )
        }
    lease = now + dt.timedelta(seconds=lease_seconds)
    claimed = []
    for row in rows:
        hold = None
        if budget is not None:
            hold = budget.try_reserve(sizes.get(row.id, 0))
            if hold is None:
                break
        unopenable = ""
        try:
            raw = open_raw(ring, row) if ring is not None else _unsealed(row)
        except seal.SealedRecordError:
            raw = b""
            unopenable = why_unopenable(ring, row) or "sealed at rest, and it does not open"
            row.last_error = unopenable[:MAX_ERROR_CHARS]
            if hold is not None:
                hold.release()  # nothing of it is loaded
                hold = None
        row.status = SENDING
        row.leased_until = lease
        claimed.append(
            ClaimedItem(
                id=row.id,
                queue_id=row.queue_id,
                mail_from=row.mail_from,
                rcpt_to=row.rcpt_to,
                raw=raw,
                attempts=row.attempts,
                created_at=row.created_at,
                lease=lease,
                unopenable=unopenable,
                hold=hold,
            )
        )
    session.flush()
    return claimed


def _unsealed(row: QueueItem) -> bytes:
    if row.sealed:
        raise seal.SealedRecordError()
    return row.raw


def _still_ours(item: ClaimedItem) -> sa.ColumnElement[bool]:
    return sa.and_(
        QueueItem.id == item.id,
        QueueItem.status == SENDING,
        QueueItem.leased_until == item.lease,
    )


def mark_sent(session: so.Session, item: ClaimedItem) -> bool:
    """Delete the delivered row (even if our lease ran out: it must not be sent again)."""
    result = session.execute(sa.delete(QueueItem).where(QueueItem.id == item.id))
    return _rowcount(result) == 1


def retry_delay(attempts: int, relay: RelaySettings, rng: random.Random | None = None) -> float:
    """Seconds until the next try after `attempts` failed ones: doubling, capped.

    With `rng`, ±10 % jitter spreads a backlog out after an outage instead of
    retrying it all at the same instant; tests pass a seeded one or none.
    """
    exponent = max(attempts - 1, 0)
    cap = relay.max_retry_interval
    # 2**64 is far past any cap; stop doubling before floats overflow.
    delay = cap if exponent >= 64 else min(relay.first_retry * 2.0**exponent, cap)
    if rng is not None:
        delay *= rng.uniform(0.9, 1.1)
    return max(delay, 0.0)


def defer(
    session: so.Session,
    item: ClaimedItem,
    *,
    error: str,
    now: dt.datetime,
    relay: RelaySettings,
    rng: random.Random | None = None,
) -> dt.datetime | None:
    """Put the row back with back-off; the time of the next try, or None if the lease was lost."""
    attempts = item.attempts + 1
    next_at = now + dt.timedelta(seconds=retry_delay(attempts, relay, rng))
    result = session.execute(
        sa.update(QueueItem)
        .where(_still_ours(item))
        .values(
            status=QUEUED,
            leased_until=None,
            attempts=attempts,
            next_attempt_at=next_at,
            last_error=error[:MAX_ERROR_CHARS],
        )
    )
    return next_at if _rowcount(result) == 1 else None


def release(session: so.Session, item: ClaimedItem, *, now: dt.datetime) -> bool:
    """Hand an unattempted row back at once (a clean stop); not counted as an attempt."""
    result = session.execute(
        sa.update(QueueItem)
        .where(_still_ours(item))
        .values(status=QUEUED, leased_until=None, next_attempt_at=now)
    )
    return _rowcount(result) == 1


def give_up(
    session: so.Session,
    item: ClaimedItem,
    failure: dsn.Failure,
    *,
    now: dt.datetime,
    reporting_mta: str,
) -> str | None:
    """Remove the row and, in the same transaction, bounce it to a hosted sender.

    Returns where the bounce went: "mailbox", "dropped" (sender not hosted, or a
    null sender: a bounce is never bounced), or None if the lease was lost and
    nothing was changed. A row whose sealed bytes do not open bounces without
    them: the report then carries what the gateway holds in clear (envelope,
    queue id, dates, and the Message-ID the mail log noted).
    """
    result = session.execute(sa.delete(QueueItem).where(_still_ours(item)))
    if _rowcount(result) != 1:
        return None
    sender = accounts.find_address(session, item.mail_from) if item.mail_from else None
    detail = f"queue {item.queue_id} to {item.rcpt_to}: {failure.status}"
    if sender is None:
        why = "null sender" if not item.mail_from else "sender not hosted"
        audit.record(
            session,
            "relay.bounce_dropped",
            actor=RELAY_ACTOR,
            target=item.mail_from or "<>",
            success=False,
            detail=f"{detail} ({why})",
        )
        return "dropped"
    report = dsn.build_bounce(
        original=None if item.unopenable else item.raw,
        original_message_id=_logged_message_id(session, item) if item.unopenable else "",
        envelope_from=item.mail_from,
        recipient=item.rcpt_to,
        failure=failure,
        reporting_mta=reporting_mta,
        queue_id=item.queue_id,
        arrival_date=item.created_at,
        now=now,
    )
    mailbox.store(session, sender, report, queue_id=item.queue_id, envelope_from="", now=now)
    audit.record(
        session,
        "relay.bounce",
        actor=RELAY_ACTOR,
        target=sender.address,
        account_id=sender.account_id,
        success=False,
        detail=detail,
    )
    return "mailbox"


def _logged_message_id(session: so.Session, item: ClaimedItem) -> str:
    """The Message-ID the mail log noted in clear for this message and recipient, or ""."""
    found = session.scalar(
        sa.select(MailLogEntry.message_id)
        .where(MailLogEntry.queue_id == item.queue_id, MailLogEntry.recipient == item.rcpt_to)
        .order_by(MailLogEntry.id)
        .limit(1)
    )
    return found or ""


def _rowcount(result: sa.Result[object]) -> int:
    return int(getattr(result, "rowcount", 0))


# -- administration (`sealgate queue …`) -------------------------------------------


def list_items(session: so.Session) -> list[QueueItem]:
    return list(session.scalars(sa.select(QueueItem).order_by(QueueItem.created_at, QueueItem.id)))


def in_flight(item: QueueItem, now: dt.datetime) -> bool:
    return item.status == SENDING and item.leased_until is not None and item.leased_until > now


def find(session: so.Session, ident: str) -> list[QueueItem]:
    """The rows of queue id `ident` (one per recipient); else, if it is a number, that row.

    Taken as an admin copies it: the row number with the `#` that `queue list` prints
    before it, the queue id also in lower case (it is upper-case hex).
    """
    wanted = ident.strip()
    rows = list(
        session.scalars(
            sa.select(QueueItem)
            .where(QueueItem.queue_id.in_({wanted, wanted.upper()}))
            .order_by(QueueItem.id)
        )
    )
    number = wanted.removeprefix("#")
    # A row id only if it can be one: a larger number overflows the column's type.
    if not rows and number.isascii() and number.isdigit() and valid_id(int(number)):
        row = session.get(QueueItem, int(number))
        rows = [row] if row is not None else []
    if not rows:
        raise QueueError(f"no queued message {ident}")
    return rows


def _refuse_in_flight(rows: list[QueueItem], now: dt.datetime) -> None:
    busy = [row for row in rows if in_flight(row, now)]
    if busy:
        raise QueueError(
            f"queue {busy[0].queue_id} to {busy[0].rcpt_to} is being sent right now; "
            "try again in a moment"
        )


def retry_now(session: so.Session, ident: str, *, now: dt.datetime, actor: str) -> list[QueueItem]:
    """Make the rows due at once (an admin fixed the relay and does not want to wait)."""
    rows = find(session, ident)
    _refuse_in_flight(rows, now)
    for row in rows:
        row.status = QUEUED
        row.leased_until = None
        row.next_attempt_at = now
        audit.record(
            session, "queue.retry", actor=actor, target=row.rcpt_to, detail=f"queue {row.queue_id}"
        )
    return rows


def delete(session: so.Session, ident: str, *, now: dt.datetime, actor: str) -> list[QueueItem]:
    """Drop the rows without a bounce (an admin's decision, so it is audited)."""
    rows = find(session, ident)
    _refuse_in_flight(rows, now)
    for row in rows:
        session.delete(row)
        audit.record(
            session,
            "queue.delete",
            actor=actor,
            target=row.rcpt_to,
            detail=f"queue {row.queue_id} from {row.mail_from or '<>'}",
        )
    return rows
