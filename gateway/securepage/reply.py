"""A recipient's answer from the secure page: encrypted to the sender's key, into their INBOX.

The answer is an ordinary message (text plus attachments) from the recipient's
address to the sender, threaded with In-Reply-To/References, sealed as PGP/MIME
to the sender's current public key and stored in the sender's mailbox in the
request's transaction. Its plaintext exists only in memory. When the sender
answers it with encryption on, the submission pipeline sends that answer back
through a new secure page (the recipient still has no key), never in clear.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import re
import secrets
from dataclasses import dataclass
from email.message import EmailMessage

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway import audit, mailbox, mimepolicy
from gateway.accounts import find_address
from gateway.models import MailboxMessage, SecureLink
from gateway.pipeline import pgpmime
from gateway.securepage.content import PageMessage, safe_filename
from gateway.securepage.notify import MAX_SUBJECT, one_line
from gateway.settings import SecurePageSettings
from keystore import messages, pgp

MAX_TEXT_CHARS = 200_000
MAX_FILES = 10
_MIME_PART = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}"
_MIME_TYPE = re.compile(_MIME_PART + "/" + _MIME_PART)
# Types whose body is MIME structure, never base64 (RFC 2045 6.4, RFC 2046 5): a file
# declared as one is sent as plain bytes, else readers lose it.
_STRUCTURED = ("message", "multipart")


class ReplyError(ValueError):
    """An answer that cannot be sent; the text is a message id safe to show (translated)."""


@dataclass(frozen=True)
class ReplyFile:
    filename: str
    content_type: str
    data: bytes = dataclasses.field(repr=False)


def reply_subject(original: str) -> str:
    subject = one_line(original, MAX_SUBJECT)
    if subject.lower().startswith(("re:", "aw:", "réf:")):
        return subject
    return f"Re: {subject}" if subject else "Re:"


def build_reply(
    *,
    recipient: str,
    sender_address: str,
    original: PageMessage,
    text: str,
    files: list[ReplyFile],
    now: dt.datetime,
    hostname: str,
    settings: SecurePageSettings,
) -> bytes:
    """The answer in clear, as a MIME message (kept in memory only)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip() and not files:
        raise ReplyError("Write an answer or attach a file.")
    if len(text) > MAX_TEXT_CHARS or len(files) > MAX_FILES:
        raise ReplyError("The answer is too large.")
    if len(text.encode("utf-8")) + sum(len(f.data) for f in files) > settings.max_reply_bytes:
        raise ReplyError("The answer is too large.")
    message = EmailMessage(policy=mimepolicy.DEFAULT)
    message["From"] = recipient
    message["To"] = sender_address
    message["Subject"] = mimepolicy.no_encoded_words(reply_subject(original.subject))
    message["Date"] = email.utils.format_datetime(now.astimezone(dt.UTC))
    message["Message-ID"] = f"<{secrets.token_hex(16)}@{hostname}>"
    if original.message_id and "=?" not in original.message_id:
        message["In-Reply-To"] = original.message_id
        message["References"] = original.message_id
    message.set_content(text if text.endswith("\n") else text + "\n")
    for index, upload in enumerate(files):
        maintype, _, subtype = (
            upload.content_type if _MIME_TYPE.fullmatch(upload.content_type) else ""
        ).partition("/")
        if maintype.lower() in _STRUCTURED:
            maintype = subtype = ""
        message.add_attachment(
            upload.data,
            maintype=maintype or "application",
            subtype=subtype or "octet-stream",
            filename=safe_filename(upload.filename, index),
        )
    try:
        return message.as_bytes(policy=mimepolicy.SMTP)
    except mimepolicy.HeaderInjection:
        raise ReplyError("The answer could not be written.") from None


def encrypt_to(key: pgp.PublicKey, raw: bytes) -> bytes:
    """PGP/MIME to the sender's key (unsigned: the recipient has no key of ours).

    Pure computation: run it before the transaction that stores the result.
    """
    sealed = messages.encrypt(pgpmime.inner_entity(raw), [key], None)
    return pgpmime.build_encrypted(raw, sealed)


def deliver(
    session: so.Session,
    link_id: int,
    encrypted: bytes,
    now: dt.datetime,
    settings: SecurePageSettings,
) -> MailboxMessage:
    """Store the encrypted answer in the sender's INBOX; counts against the link's limit."""
    result = session.execute(
        sa.update(SecureLink)
        .where(SecureLink.id == link_id, SecureLink.reply_count < settings.max_replies_per_link)
        .values(reply_count=SecureLink.reply_count + 1, last_reply_at=now)
        .execution_options(synchronize_session=False)
    )
    if int(getattr(result, "rowcount", 0)) != 1:
        raise ReplyError("This link cannot send more answers.")
    link = session.get(SecureLink, link_id)
    assert link is not None
    sender = link.message.sender_address
    address = find_address(session, sender)
    if address is None:
        raise ReplyError("The answer cannot be delivered right now.")
    stored = mailbox.store(
        session,
        address,
        encrypted,
        queue_id=secrets.token_hex(8).upper(),
        envelope_from=link.recipient,
        now=now,
        encrypted=True,
    )
    audit.record(
        session,
        "securepage.reply",
        actor=link.recipient,
        target=sender,
        account_id=link.message.account_id,
        detail=f"queue {link.message.queue_id}, {len(encrypted)} bytes",
    )
    return stored
