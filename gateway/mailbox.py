"""Hosted mailboxes: messages stored per address and folder, raw bytes included."""

from __future__ import annotations

import datetime as dt
import email.utils
from email.parser import BytesHeaderParser
from email.policy import default as default_policy

import sqlalchemy.orm as so

from gateway import rawheaders
from gateway.models import Address, MailboxMessage

INBOX = "INBOX"
SENT = "Sent"


def store(
    session: so.Session,
    address: Address,
    raw: bytes,
    *,
    queue_id: str,
    envelope_from: str,
    now: dt.datetime,
    folder: str = INBOX,
    encrypted: bool = False,
) -> MailboxMessage:
    """Add the message to the caller's transaction; list columns come from its headers."""
    # Only the header block: the header parser would still read the whole body.
    headers = BytesHeaderParser(policy=default_policy).parsebytes(rawheaders.split_message(raw)[0])
    row = MailboxMessage(
        address=address,
        folder=folder,
        flags="",
        queue_id=queue_id,
        subject=_header_text(headers, "Subject"),
        from_addr=_header_text(headers, "From"),
        envelope_from=envelope_from,
        date=_header_date(headers),
        received_at=now,
        size=len(raw),
        encrypted=encrypted,
        raw=raw,
    )
    session.add(row)
    return row


def _header_text(headers: object, name: str) -> str:
    try:
        value = headers[name]  # type: ignore[index]
    except Exception:  # noqa: BLE001  (a malformed header must not lose the message)
        return ""
    return "" if value is None else str(value)[:2000]


def _header_date(headers: object) -> dt.datetime | None:
    raw = _header_text(headers, "Date")
    if not raw:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed
