"""Hosted mailboxes: messages stored per address and folder, raw bytes included."""

from __future__ import annotations

import datetime as dt
import email.utils
import re
from collections.abc import Iterable
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32
from typing import Any

import sqlalchemy.orm as so

from gateway import rawheaders
from gateway.charsets import decode_text, without_bidi_controls
from gateway.mail import served_line_ends
from gateway.models import Address, MailboxMessage

SEARCH_INDEX_LIMIT = 2 * 1024 * 1024
SEARCH_TEXT_LIMIT = 200_000
_TAGS = re.compile(r"<[^>]*>")

# The header fields a message list shows (the first of each counts).
_LISTED = frozenset({"subject", "from", "to", "cc", "message-id", "date"})
# The columns the list shows that the header fields give, and the fields of each.
LISTED_COLUMNS = ("subject", "from_addr", "to_addr", "date")
COLUMN_FIELDS: dict[str, tuple[str, ...]] = {
    "subject": ("Subject",),
    "from_addr": ("From",),
    "to_addr": ("To", "Cc"),
    "date": ("Date",),
}

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
    inserts, gateway.pipeline.deliver); list columns come from its headers.

    Every stored message passes here, so it reads the header block with the gateway's
    own split (gateway.rawheaders) instead of the MIME parser's header registry, which
    parsed each field into a syntax tree and cost more than the rest of a plain
    message's path."""
    fields = _listed_fields(raw)
    return {
        "flags": "",
        "queue_id": queue_id,
        **_list_columns(fields),
        "search_text": None if encrypted else searchable_text(raw),
        "envelope_from": envelope_from,
        "message_id": fields.get("message-id", "")[:250],
        "received_at": now,
        "size": served_line_ends.served_size(raw),  # RFC822.SIZE: what IMAP serves
        "encrypted": encrypted,
        "raw": raw,
    }


def list_columns(message: bytes, *, names: Iterable[str] = LISTED_COLUMNS) -> dict[str, Any]:
    """The list columns `names` (of LISTED_COLUMNS) as the header block of `message` gives
    them: a stored message, or the decrypted entity whose signed fields a reader verified
    (gateway.reading), read alike so that both show alike."""
    columns = _list_columns(_listed_fields(message))
    return {name: columns[name] for name in names}


def _listed_fields(raw: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    for field in rawheaders.iter_headers(rawheaders.header_block(raw)):
        name = field.name.lower()
        if name in _LISTED and name not in fields:
            fields[name] = _shown(field)
    return fields


def _list_columns(fields: dict[str, str]) -> dict[str, Any]:
    return {
        "subject": fields.get("subject", ""),
        "from_addr": fields.get("from", ""),
        "to_addr": ", ".join(v for v in (fields.get("to"), fields.get("cc")) if v),
        "date": _header_date(fields.get("date", "")),
    }


def searchable_text(raw: bytes) -> str | None:
    """The text parts of a plain message, for search; None when it is too big to index.

    Only ever called for mail that is stored unencrypted anyway: an encrypted
    message's body is never indexed (its search matches the subject only). The
    compat32 policy: only the MIME structure and the text is needed, not parsed
    header objects (each Content-Type lookup of the default policy parses anew).
    """
    if len(raw) > SEARCH_INDEX_LIMIT:
        return None
    single = _single_text_part(raw)
    if single is not None:
        return " ".join(single.replace("\x00", " ").split())[:SEARCH_TEXT_LIMIT]
    try:
        message = BytesParser(policy=compat32).parsebytes(raw)
        texts: list[str] = []
        for part in message.walk():
            if part.get_content_maintype() != "text" or part.is_multipart():
                continue
            if part.get_content_disposition() == "attachment":
                continue
            content = _text_of(part)
            if part.get_content_subtype() == "html":
                content = _TAGS.sub(" ", content)
            texts.append(content)
    except Exception:  # noqa: BLE001  (malformed MIME: the message is stored, just not indexed)
        return None
    return " ".join(" ".join(texts).replace("\x00", " ").split())[:SEARCH_TEXT_LIMIT]


def _single_text_part(raw: bytes) -> str | None:
    """The text of a message that is one text/plain part in 7bit or 8bit (most mail from
    programs), read straight from the body; None for any other shape (the parser's)."""
    block, _separator, body = rawheaders.split_message(raw)
    head = Message()
    for field in rawheaders.iter_headers(block):
        name = field.name.lower()
        if name in ("content-type", "content-transfer-encoding", "content-disposition"):
            if name in head:
                return None  # repeated: let the parser decide which counts
            head[name] = field.value
    if head.get_content_type() != "text/plain" or head.get_content_disposition() == "attachment":
        return None
    if head.get("content-transfer-encoding", "7bit").strip().lower() not in ("7bit", "8bit"):
        return None
    head.set_payload(body)
    return _text_of(head)


def _text_of(part: Message) -> str:
    """A text part decoded (transfer encoding, then its charset; UTF-8 when it names none
    or one Python does not know), never failing on bad bytes."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    return decode_text(payload, part.get_content_charset())


def _shown(field: rawheaders.RawHeader) -> str:
    """A header as a list shows it: unfolded, encoded words decoded, bounded; bytes that
    are not UTF-8, and NUL (PostgreSQL's text columns hold none), become U+FFFD (a
    database column holds no lone surrogates); bidi controls go (one line must not
    reorder the list)."""
    value = without_bidi_controls(field.value)
    if not value.isascii():
        value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return value.replace("\x00", "\ufffd")[:2000]


def _header_date(value: str) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed
