"""Reading a stored message: decrypt on the fly for its owner, split it into what a page shows.

The address's secret key is unwrapped for this one call and dropped with it:
nothing decrypted is cached or written anywhere. The signature is checked
against the sender's key when the gateway knows it (a hosted sender's current
or older key).

The Sent copy of a message that went out through secure pages is sealed under
the message's password, not encrypted to the sender's key: it opens only with
the key `unlock_sealed` gets from that password.

Whatever a hosted user received is outside data, however it is stored: every
decryption of stored OpenPGP goes through `decrypt_stored`, which decrypts in
the sandbox of `keystore.untrusted` with the `[limits]` bounds on size, time and
memory. What it decrypts to is held to the MIME bounds of any arriving message
(`[smtp] max_mime_depth`, `max_mime_parts`, gateway.pipeline.structure) before
Python's parser sees it: the SMTP servers measured only the ciphertext around it.
A message beyond any of these is `CannotShow`: the reader says so, and the log
gets one line naming the message (never its content) for the admin.
"""

from __future__ import annotations

import email.policy
import email.utils
import logging
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Literal

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway import mailbox, mimepolicy
from gateway.addresses import InvalidAddress, normalize_address
from gateway.charsets import decode_text, without_bidi_controls
from gateway.mail import header_protection
from gateway.models import Address, MailboxMessage
from gateway.pipeline import pgpmime
from gateway.pipeline.errors import RejectMessage
from gateway.pipeline.structure import check_structure
from gateway.securepage import crypto, sent_copy
from gateway.settings import LimitsSettings, SecurePageSettings, SmtpSettings
from keystore import messages, pgp, store, untrusted
from keystore.masterkey import MasterKeyRing
from keystore.wrap import DecryptionError

log = logging.getLogger(__name__)

SignatureStatus = Literal[
    "valid",  # and the header fields shown are the signed ones, as they arrived
    "valid-text-only",  # the message signs no header field (older mail, other programs)
    "valid-other-sender",  # signed by `signed_by`, the message's other From is `sent_as`
    "valid-headers-differ",  # the signed fields are shown; it arrived with others
    "invalid",
    "unknown-key",
    "unsigned",
    "not-encrypted",
    "sealed",
]
HEADERS_SHOWN = ("From", "To", "Cc", "Date", "Subject", "Reply-To", "Message-ID", "In-Reply-To")


class MessageNotFound(LookupError):
    """No such message for this account (the same answer whether it exists elsewhere or not)."""


class CannotDecrypt(ValueError):
    """The message is encrypted but none of the address's keys opens it."""


class CannotShow(CannotDecrypt):
    """The message is beyond the bounds for decrypting stored mail (a compression bomb,
    or simply too large or too slow to open); `kind` is the sandbox's reason."""

    def __init__(self, message_id: int, kind: str) -> None:
        super().__init__(message_id)
        self.kind = kind


class PasswordNeeded(CannotDecrypt):
    """The message is a Sent copy sealed under its secure-page password (or the key is wrong)."""


def is_sealed(row: MailboxMessage) -> bool:
    return row.encrypted and sent_copy.is_sealed(row.raw)


def sealed_binding(row: MailboxMessage) -> str:
    return sent_copy.binding(row.queue_id, row.address.address)


def unlock_sealed(
    row: MailboxMessage, password: str, settings: SecurePageSettings
) -> crypto.MessageKey:
    """The key of a sealed Sent copy, if `password` is its password; else `PasswordNeeded`.

    Costs one Argon2 run and touches no database: the caller reads the row (it
    must be the owner's), ends its transaction, then calls this.
    """
    blob = sent_copy.blob_of(row.raw) if row.encrypted else None
    if blob is None:
        raise PasswordNeeded(row.id)
    try:
        kek = crypto.password_key(password, settings, crypto.copy_params(blob))
        return crypto.unwrap_copy(kek, blob, binding=sealed_binding(row))
    except crypto.SealError:
        raise PasswordNeeded(row.id) from None


@dataclass(frozen=True)
class Attachment:
    index: int
    filename: str
    content_type: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class OpenedMessage:
    id: int
    address: str
    folder: str
    encrypted: bool
    signature: SignatureStatus
    headers: dict[str, str]
    text: str = field(repr=False)
    html: str | None = field(repr=False)
    attachments: list[Attachment]
    # `headers` are the fields the signature covers (RFC 9788), not the outer ones.
    headers_signed: bool = False
    signed_by: str | None = None  # for "valid-other-sender": whose key signed
    sent_as: str | None = None  # ... and the other From the message names


def read_budget(limits: LimitsSettings) -> untrusted.Budget:
    """The sandbox budget for one stored message: the input may be the armored form
    of the largest output (a third larger) plus headers."""
    return untrusted.Budget(
        max_bytes=limits.decrypt_max_bytes * 4 // 3 + 64 * 1024,
        timeout=limits.decrypt_timeout,
        memory_mb=limits.decrypt_memory_mb,
    )


def decrypt_stored(
    session: so.Session,
    ring: MasterKeyRing,
    row: MailboxMessage,
    armored: bytes,
    limits: LimitsSettings | None = None,
    *,
    sender: str | None = None,
) -> messages.Decrypted:
    """Decrypt the OpenPGP payload of a stored message for its owner, within `limits`
    (the defaults when None), checking its signature against the keys of `sender`
    (the address in From). `CannotShow` past the bounds, else `CannotDecrypt`."""
    limits = limits or LimitsSettings()
    senders = [store.parsed_public_key(r) for r in store.keys_of(session, sender)] if sender else []
    try:
        return store.decrypt_for(
            session,
            ring,
            row.address.address,
            armored,
            read_budget(limits),
            max_output=limits.decrypt_max_bytes,
            senders=senders,
        )
    except untrusted.UntrustedDataError as exc:
        if exc.kind == "invalid":
            raise CannotDecrypt(row.id) from None
        log.warning(
            "stored message %d of %s cannot be shown: %s (%s)",
            row.id,
            row.address.address,
            exc.kind,
            exc,
        )
        raise CannotShow(row.id, exc.kind) from None
    except (pgp.PgpError, DecryptionError, store.KeystoreError):
        raise CannotDecrypt(row.id) from None


def owned_message(session: so.Session, account_id: int, message_id: int) -> MailboxMessage:
    row = session.scalar(
        sa.select(MailboxMessage)
        .join(Address, MailboxMessage.address_id == Address.id)
        .where(MailboxMessage.id == message_id, Address.account_id == account_id)
    )
    if row is None:
        raise MessageNotFound(message_id)
    return row


def open_message(
    session: so.Session,
    ring: MasterKeyRing,
    account_id: int,
    message_id: int,
    *,
    sealed_key: crypto.MessageKey | None = None,
    limits: LimitsSettings | None = None,
    smtp: SmtpSettings | None = None,
) -> OpenedMessage:
    """Decrypt and split a message; a sealed Sent copy needs `sealed_key` (`unlock_sealed`).

    Decryption is bounded by `limits` (`decrypt_stored`), the decrypted entity by the
    MIME bounds of `smtp` (the defaults when None); `CannotShow` past them.
    """
    row = owned_message(session, account_id, message_id)
    outer = BytesParser(policy=mimepolicy.READING).parsebytes(row.raw)
    headers = {name: shown(outer[name]) for name in HEADERS_SHOWN if outer[name] is not None}
    sealed = is_sealed(row)
    armored = pgpmime.encrypted_payload(row.raw) if row.encrypted and not sealed else None
    entity: EmailMessage
    signature: SignatureStatus
    verdict = _Verdict("not-encrypted")
    if sealed:
        blob = sent_copy.blob_of(row.raw)
        if blob is None:
            raise CannotDecrypt(message_id)
        if sealed_key is None:
            raise PasswordNeeded(message_id)
        try:
            content = crypto.open_copy(sealed_key, blob, binding=sealed_binding(row))
        except crypto.SealError:
            raise PasswordNeeded(message_id) from None
        entity = BytesParser(policy=mimepolicy.READING).parsebytes(content)
        headers = {name: shown(entity[name]) for name in (*HEADERS_SHOWN, "Bcc") if entity[name]}
        signature = "sealed"
    elif armored is None:
        entity = outer
        signature = "not-encrypted"
    else:
        sender = _address_in(headers.get("From", ""))
        decrypted = decrypt_stored(session, ring, row, armored, limits, sender=sender)
        _check_decrypted_structure(row, decrypted.data, smtp or SmtpSettings())
        entity = BytesParser(policy=mimepolicy.READING).parsebytes(decrypted.data)
        verdict = _verdict(session, ring, row, armored, limits, outer, entity, decrypted, sender)
        signature = verdict.signature
        _list_as_verified(row, decrypted.data, entity, verdict)
        if verdict.headers_signed:
            # RFC 9788 §4.2: the protected fields, and none of the outer ones merged in.
            headers = {
                name: shown(value)
                for name, value in header_protection.shown(entity, HEADERS_SHOWN).items()
            }
    if entity["Bcc"] is not None and "Bcc" not in headers:
        # A Sent copy's Bcc (the sender's own record; gateway.compose), also when it
        # is inside the encryption.
        headers["Bcc"] = shown(entity["Bcc"])
    text, html, attachments = _split(entity)
    return OpenedMessage(
        id=row.id,
        address=row.address.address,
        folder=row.folder,
        encrypted=row.encrypted,
        signature=signature,
        headers=headers,
        text=text,
        html=html,
        attachments=attachments,
        headers_signed=verdict.headers_signed,
        signed_by=verdict.signed_by,
        sent_as=verdict.sent_as,
    )


@dataclass(frozen=True)
class _Verdict:
    signature: SignatureStatus
    headers_signed: bool = False
    signed_by: str | None = None
    sent_as: str | None = None


def _verdict(
    session: so.Session,
    ring: MasterKeyRing,
    row: MailboxMessage,
    armored: bytes,
    limits: LimitsSettings | None,
    outer: EmailMessage,
    entity: EmailMessage,
    decrypted: messages.Decrypted,
    sender: str | None,
) -> _Verdict:
    """What a decrypted message's signature vouches for: the text alone, or the header
    fields too (RFC 9788), and whether they are the ones it arrived with.

    A signed part passed on by someone else under new outer fields (another Subject,
    To, or From) must not read as signed for those: the signed fields are shown, and
    the status says how the outer ones differ. When the signed From names another
    address than the outer one, the signature is checked against that address's keys
    as well (a second decryption, only then): "signed by X, but sent as Y".
    """
    signature = decrypted.signature
    if not header_protection.is_protected(entity):
        return _Verdict("valid-text-only" if signature == "valid" else signature)
    signer = sender
    named = _address_in(str(entity["From"] or ""))
    if (
        signature != "valid"
        and named is not None
        and named != sender
        and store.keys_of(session, named)
    ):
        again = decrypt_stored(session, ring, row, armored, limits, sender=named)
        if again.signature == "valid":
            signature, signer = "valid", named
    if signature != "valid":
        return _Verdict(signature)
    other = named if signer == sender else sender
    if other is not None and other != signer:
        return _Verdict("valid-other-sender", True, signed_by=signer, sent_as=other)
    if named != signer or header_protection.arrived_otherwise(outer, entity):
        return _Verdict("valid-headers-differ", True)
    return _Verdict("valid", True)


def _list_as_verified(
    row: MailboxMessage, decrypted: bytes, entity: EmailMessage, verdict: _Verdict
) -> None:
    """Bring the row's list columns to what this reading verified, so the message list
    and search show what the page shows (only a reader decrypts: they learn it here).

    With signed fields (RFC 9788) the list shows those, and `signed_fields` says whether
    the message arrived with them ("signed") or under others ("differ", which the list
    marks); a field the writer kept confidential stays out of the clear columns (its
    outer value stays). Otherwise, the outer fields, as delivery stored them. The columns
    are written only when they change; a message never verified costs nothing here."""
    state = ""
    if verdict.headers_signed:
        state = "signed" if verdict.signature == "valid" else "differ"
    if state == row.signed_fields == "":
        return
    columns = mailbox.list_columns(row.raw)
    if state:
        clear = header_protection.in_clear(entity)
        names = [
            column
            for column, fields in mailbox.COLUMN_FIELDS.items()
            if all(f.lower() in clear for f in fields)
        ]
        columns.update(mailbox.list_columns(decrypted, names=names))
    columns["signed_fields"] = state
    for name, value in columns.items():
        if getattr(row, name) != value:
            setattr(row, name, value)


def _check_decrypted_structure(row: MailboxMessage, data: bytes, smtp: SmtpSettings) -> None:
    """`CannotShow` for a decrypted entity nested or split beyond the bounds of any mail:
    Python's parser recurses per level (RecursionError near 500) and spent 20 s of the
    portal's CPU on 2 MB of 20,000 parts, at every view."""
    try:
        check_structure(data, max_depth=smtp.max_mime_depth, max_parts=smtp.max_mime_parts)
    except RejectMessage:
        log.warning(
            "stored message %d of %s cannot be shown: its decrypted MIME structure is"
            " beyond [smtp] max_mime_depth or max_mime_parts",
            row.id,
            row.address.address,
        )
        raise CannotShow(row.id, "structure") from None


def shown(value: object) -> str:
    """A header value as a page shows it: no bidi control reorders it."""
    return without_bidi_controls(str(value))


def _address_in(header: str) -> str | None:
    _name, addr = email.utils.parseaddr(header)
    try:
        return normalize_address(addr)
    except InvalidAddress:
        return None


def _split(entity: EmailMessage) -> tuple[str, str | None, list[Attachment]]:
    """The text body, the HTML body (unsanitized: the page sanitizes), and attachments."""
    text_part = entity.get_body(preferencelist=("plain",))
    html_part = entity.get_body(preferencelist=("html",))
    text = _content(text_part) if isinstance(text_part, EmailMessage) else ""
    html = _content(html_part) if isinstance(html_part, EmailMessage) else None
    attachments = [
        Attachment(
            index=index,
            filename=part.get_filename() or f"attachment-{index}",
            content_type=part.get_content_type(),
            data=_payload_bytes(part),
        )
        for index, part in enumerate(entity.iter_attachments())
        if isinstance(part, EmailMessage)
    ]
    return text, html, attachments


def _payload_bytes(part: EmailMessage) -> bytes:
    """The bytes a download gives; for an attached message (a digest's parts among
    them), the message itself, where `get_payload(decode=True)` gave nothing."""
    if part.is_multipart():
        inner = part.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], EmailMessage):
            return inner[0].as_bytes(policy=email.policy.SMTP)
        return b""
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _content(part: EmailMessage) -> str:
    """Decoded text with plain line ends (mail carries CRLF; pages want LF).

    Decoded as the inbound store and the secure page decode (`decode_text`): a label
    that names no usable codec (`idna`, `undefined`, a NUL) reads as UTF-8, where
    `get_content` raised and the body showed as empty."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    return decode_text(payload, part.get_content_charset()).replace("\r\n", "\n")


def mark_seen(row: MailboxMessage) -> None:
    """Opened in the webmail: read everywhere (IMAP programs see `\\Seen`)."""
    flags = row.flags.split()
    if SEEN not in flags:
        row.flags = " ".join([SEEN, *flags])


def move(session: so.Session, account_id: int, message_id: int, folder: str) -> None:
    owned_message(session, account_id, message_id).folder = folder


def delete(session: so.Session, account_id: int, message_id: int) -> None:
    """Into Trash; from Trash, gone for good."""
    row = owned_message(session, account_id, message_id)
    if row.folder == TRASH:
        session.delete(row)
    else:
        row.folder = TRASH


TRASH = "Trash"
SEEN = "\\Seen"
