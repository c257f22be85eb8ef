"""Drafts: stored encrypted to the author's own key, like everything the webmail keeps.

A draft is a complete MIME message; only its subject stays in clear (for the
list), as for encrypted mail.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway import audit, mailbox, reading
from gateway.models import Address, MailboxMessage
from gateway.pipeline import pgpmime
from gateway.settings import LimitsSettings
from keystore import messages, store
from keystore.masterkey import MasterKeyRing

DRAFTS = "Drafts"


def save(
    session: so.Session,
    ring: MasterKeyRing,
    address: Address,
    raw: bytes,
    *,
    now: dt.datetime,
    replaces: int | None = None,
) -> MailboxMessage:
    """Store `raw` as a draft of `address` (replacing draft `replaces`, if given)."""
    key = store.get_or_create(
        session, ring, address.address, now, events=audit.key_event_sink("webmail")
    )
    public = store.parsed_public_key(key)
    canonical = pgpmime.to_crlf(raw)
    sealed = pgpmime.build_encrypted(canonical, messages.encrypt(canonical, [public], None))
    if replaces is not None:
        old = reading.owned_message(session, address.account_id, replaces)
        if old.folder == DRAFTS:
            session.delete(old)
    row = mailbox.store(
        session,
        address,
        sealed,
        queue_id="draft",
        envelope_from=address.address,
        now=now,
        folder=DRAFTS,
        encrypted=True,
    )
    session.flush()
    return row


def find(session: so.Session, account_id: int, message_id: str) -> int | None:
    """The account's draft with `message_id`, if any: a second post of one compose
    page (a double click on Save) replaces it instead of making another."""
    if not message_id:
        return None
    return session.scalar(
        sa.select(MailboxMessage.id)
        .join(Address, MailboxMessage.address_id == Address.id)
        .where(
            Address.account_id == account_id,
            MailboxMessage.folder == DRAFTS,
            MailboxMessage.message_id == message_id,
        )
        .order_by(MailboxMessage.id)
        .limit(1)
    )


def load(
    session: so.Session,
    ring: MasterKeyRing,
    account_id: int,
    draft_id: int,
    limits: LimitsSettings | None = None,
) -> bytes:
    """The draft's MIME entity, decrypted for its author within `limits`."""
    row = reading.owned_message(session, account_id, draft_id)
    armored = pgpmime.encrypted_payload(row.raw)
    if row.folder != DRAFTS or armored is None:
        raise reading.MessageNotFound(draft_id)
    return reading.decrypt_stored(session, ring, row, armored, limits).data
