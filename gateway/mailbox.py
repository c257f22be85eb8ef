"""Hosted mailboxes: messages stored per address and folder, raw bytes included."""

from __future__ import annotations

import datetime as dt
import email.utils
import re
from email.parser import BytesHeaderParser, BytesParser
from email.policy import default as default_policy
from typing import Any

import sqlalchemy.orm as so

from gateway import rawheaders
from gateway.models import Address, MailboxMessage

SEARCH_INDEX_LIMIT = 2 * 1024 * 1024
SEARCH_TEXT_LIMIT = 200_000
_TAGS = re.compile(r"<[^>]*>")

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
    row = MailboxMessage(
        address=address,
        folder=folder,
        **message_values(
            raw, queue_id=queue_id, envelope_from=envelope_from, now=now, encrypted=encrypted
        ),
    )
    session.add(row)
    return row


def message_values(
    raw: bytes, *, queue_id: str, envelope_from: str, now: dt.datetime, encrypted: bool
) -> dict[str, Any]:
    """The columns of a stored message but its owner and folder (for `store` and for bulk
    inserts, gateway.pipeline.deliver); list columns come from its headers."""
    # Only the header block: the header parser would still read the whole body.
    headers = BytesHeaderParser(policy=default_policy).parsebytes(rawheaders.split_message(raw)[0])
    return {
        "flags": "",
        "queue_id": queue_id,
        "subject": _header_text(headers, "Subject"),
        "from_addr": _header_text(headers, "From"),
        "to_addr": ", ".join(
            v for v in (_header_text(headers, "To"), _header_text(headers, "Cc")) if v
        ),
        "search_text": None if encrypted else searchable_text(raw),
        "envelope_from": envelope_from,
        "message_id": _header_text(headers, "Message-ID").strip()[:250],
        "date": _header_date(headers),
        "received_at": now,
        "size": len(raw),
        "encrypted": encrypted,
        "raw": raw,
    }


def searchable_text(raw: bytes) -> str | None:
    """The text parts of a plain message, for search; None when it is too big to index.

    Only ever called for mail that is stored unencrypted anyway: an encrypted
    message's body is never indexed (its search matches the subject only).
    """
    if len(raw) > SEARCH_INDEX_LIMIT:
        return None
    try:
        message = BytesParser(policy=default_policy).parsebytes(raw)
        texts: list[str] = []
        for part in message.walk():
            if part.get_content_maintype() == "text" and not part.is_attachment():
                content = part.get_content()
                if part.get_content_subtype() == "html":
                    content = _TAGS.sub(" ", content)
                texts.append(content)
    except Exception:  # noqa: BLE001  (malformed MIME: the message is stored, just not indexed)
        return None
    return " ".join(" ".join(texts).split())[:SEARCH_TEXT_LIMIT]


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
