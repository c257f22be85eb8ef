"""Mail the gateway writes itself goes to a hosted recipient's mailbox, never to the relay.

Alerts, delivery reports, bounces and automatic replies addressed to a hosted
address are stored at once: relaying them would send our own mail out to the
smarthost only to come back (or, with no smarthost configured, leave a sign-in
alert waiting in the queue for ever). Everything else is queued for the relay.

An account whose login is in a hosted domain but is not itself an address (an
account may own several addresses under other names) gets the mail in its first
address; with no address at all there is no mailbox, and the mail is dropped
with an audit record rather than sent to a domain that would only return it.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway import accounts, audit, mailbox, queue
from gateway.addresses import domain_of
from gateway.models import Account, Address, QueueItem

ACTOR = "gateway"

Where = Literal["mailbox", "queue", "dropped"]


def hosted_mailbox(
    session: so.Session, recipient: str, account: Account | None = None
) -> Address | Literal[False] | None:
    """The address to store in (an alias's, for an alias); None if the recipient is not
    hosted; False if hosted but there is no mailbox to put it in."""
    address = accounts.find_deliverable(session, recipient)
    if address is not None:
        return address
    if not accounts.is_hosted(session, recipient):
        return None
    if account is not None:
        owned = session.scalar(
            sa.select(Address).where(Address.account_id == account.id).order_by(Address.id)
        )
        if owned is not None:
            return owned
    return False


def deliver_generated(
    session: so.Session,
    raw: bytes,
    *,
    sender: str,
    recipient: str,
    queue_id: str,
    now: dt.datetime,
    account: Account | None = None,
) -> Where:
    """Store `raw` in the hosted recipient's mailbox, or queue it for the relay."""
    target = hosted_mailbox(session, recipient, account)
    if target is None:
        queue.enqueue(
            session, queue_id=queue_id, mail_from=sender, rcpt_to=recipient, raw=raw, now=now
        )
        return "queue"
    if target is False:
        audit.record(
            session,
            "local.undeliverable",
            actor=ACTOR,
            target=recipient,
            account_id=account.id if account is not None else None,
            success=False,
            detail=f"queue {queue_id}: {domain_of(recipient)} is hosted but has no such mailbox",
        )
        return "dropped"
    mailbox.store(session, target, raw, queue_id=queue_id, envelope_from=sender, now=now)
    return "mailbox"


def take_home(session: so.Session, now: dt.datetime) -> int:
    """Store queued rows addressed to hosted addresses in their mailboxes; how many.

    Older releases queued alerts to hosted addresses for the relay, where, with no
    smarthost, they waited for ever; the relay runs this once when it starts.
    Rows being sent right now and sealed rows are left alone.
    """
    moved = 0
    rows = session.scalars(
        sa.select(QueueItem).where(QueueItem.status == queue.QUEUED, QueueItem.sealed.is_(False))
    ).all()
    for row in rows:
        address = accounts.find_address(session, row.rcpt_to)
        if address is None:
            continue
        mailbox.store(
            session, address, row.raw, queue_id=row.queue_id, envelope_from=row.mail_from, now=now
        )
        session.delete(row)
        moved += 1
    return moved
