"""Webmail messages: built from what the compose form holds, sent through the one pipeline.

`send` makes an RFC 5322 message with `email.message.EmailMessage` and hands it
to `gateway.pipeline.submit`, in process, exactly as the SMTP edge does: the
lock becomes `X-Sealgate-Encrypt: yes` (the pipeline strips it), and the
secure-page password goes into the submission itself, so it never sits in the
message bytes at all. Bcc recipients are in the envelope only: the message
built for sending has no Bcc header (a plain copy would otherwise show it to
everyone).

SMTP clients keep their own Sent copy (over IMAP); the webmail has no client,
so for a plain message the gateway files the Sent copy itself, in the same
transaction as the delivery. An encrypted message's Sent copy is made by the
pipeline (encrypted to the sender's key).
"""

from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from email.errors import NonASCIILocalPartDefect
from email.headerregistry import Address
from email.message import EmailMessage

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway import accounts, db, mailbox, mimepolicy
from gateway.addresses import (
    InvalidAddress,
    canonical_recipient,
    domain_of,
    normalize_address,
    quote_local_part,
    unquote_local_part,
)
from gateway.idn import InvalidDomainName, a_label
from gateway.models import Address as AddressRow
from gateway.models import MailboxMessage
from gateway.pipeline import ClientInfo, Sender, Submission, submit
from gateway.pipeline.errors import RejectMessage
from gateway.pipeline.triggers import ENCRYPT_HEADER
from gateway.runtime import Runtime
from gateway.securepage.content import safe_filename
from gateway.smtp_codes import TEMPORARY_FAILURE, UNKNOWN_LOCAL_RECIPIENT

log = logging.getLogger(__name__)

WEBMAIL_HELO = "webmail"
WEBMAIL_PROTOCOL = "HTTPS"
MAX_SUBJECT = 998
_MESSAGE_ID = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]{1,250}@[\x21-\x3b\x3d\x3f-\x7e]{1,250}>")
MAX_NAME = 200
_SEND_TOKEN = re.compile(r"[0-9a-f]{32}")
# RFC 2045 token: printable ASCII but SPACE and tspecials.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]{1,127}")
_ADDRESS_FIELD = email.policy.default.header_factory
HEADER_REFUSED = "A header field of this message could not be written safely."


class AlreadySent(Exception):  # a disposition, like RejectMessage
    """This form's message was sent before (a second click on Send): nothing is sent again."""


class ComposeError(ValueError):
    """The message cannot be sent as written; `message` is an English id the portal translates."""

    def __init__(self, message: str, **params: object) -> None:
        super().__init__(message)
        self.message = message
        self.params = params


@dataclass(frozen=True)
class Upload:
    filename: str
    content_type: str
    data: bytes = field(repr=False)


@dataclass
class Outgoing:
    """A message as the compose form holds it."""

    sender: str
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    bcc: list[str] = field(default_factory=list)
    subject: str = ""
    text: str = field(default="", repr=False)
    attachments: list[Upload] = field(default_factory=list)
    encrypt: bool = False
    in_reply_to: str = ""
    references: str = ""
    # The display names typed, by address (lower-case): headers only, never the envelope.
    names: dict[str, str] = field(default_factory=dict)
    # The compose form's send token (`send_token`): the Message-ID, and what makes a
    # second post of the same form find the message already sent.
    send_token: str = ""

    @property
    def recipients(self) -> list[str]:
        """To, Cc and Bcc once each (first mention wins), for the envelope."""
        seen: set[str] = set()
        result: list[str] = []
        for address in self.to + self.cc + self.bcc:
            if address.lower() not in seen:
                seen.add(address.lower())
                result.append(address)
        return result

    @property
    def attachment_bytes(self) -> int:
        return sum(len(a.data) for a in self.attachments)


def _entries(text: str) -> list[str]:
    """The entries of an address field, split where a mail program would split them.

    Line ends (CR, LF or both) always separate, top-level commas too; so do semicolons (a
    habit of some mail programs), which also close a group. Nothing inside a quoted
    string, a comment, angle brackets or a domain literal separates, so `"Doe, John"
    <john@example.test>` stays one entry. A group's name (`friends: a@x, b@y;`, the
    empty `undisclosed-recipients:;`) is dropped: it names nobody, and its members
    are entries of their own.
    """
    entries: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    depth = 0  # comments nest
    closer = ""  # the ">" or "]" that ends an angle address or a domain literal

    def end_entry() -> None:
        entries.append("".join(current))
        current.clear()

    for char in text:
        if char in "\r\n":  # a field is one line: a line end ends whatever is open
            quoted = escaped = False
            depth, closer = 0, ""
            end_entry()
            continue
        if escaped:
            escaped = False
        elif quoted or depth:
            if char == "\\":
                escaped = True
            elif quoted and char == '"':
                quoted = False
            elif not quoted and char == "(":
                depth += 1
            elif not quoted and char == ")":
                depth -= 1
        elif closer:
            if char == closer:
                closer = ""
            elif char == '"':
                quoted = True
        elif char in ",;":
            end_entry()
            continue
        elif char == ":" and "@" not in "".join(current):
            current.clear()  # a group's name (an address before a colon stays, and is refused)
            continue
        elif char == '"':
            quoted = True
        elif char == "(":
            depth += 1
        elif char == "<":
            closer = ">"
        elif char == "[":
            closer = "]"
        current.append(char)
    end_entry()
    return [entry.strip() for entry in entries if entry.strip()]


def _display_name(name: str) -> str:
    """A typed display name as one printable line that no reader decodes as something else."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in name).split())
    return mimepolicy.no_encoded_words(flat[:MAX_NAME])


def parse_field(text: str) -> list[Address]:
    """The mailboxes of a To/Cc/Bcc field, names as typed. An entry that is not exactly
    one address (a second address with no comma before it, a name with no address,
    a control character) is refused, naming it: a recipient is never dropped unseen."""
    found: list[Address] = []
    for entry in _entries(text):
        refusal = ComposeError("{address} is not a valid mail address.", address=entry[:320])
        # An encoded word is text the user typed, not something to decode into an address.
        try:
            parsed = _ADDRESS_FIELD("To", mimepolicy.no_encoded_words(entry))
        except Exception:  # noqa: BLE001  (the parser's own bugs on odd input: gateway.mimepolicy)
            raise refusal from None
        defects = [d for d in parsed.defects if not isinstance(d, NonASCIILocalPartDefect)]
        if defects or len(parsed.addresses) != 1:
            raise refusal
        (typed,) = parsed.addresses
        if "=?" in entry and "= ?" in typed.username:
            raise refusal  # a quoted local part that `no_encoded_words` changed
        # Python's addr_spec drops the quotes of `"a..b"`: the local part is quoted here.
        address = f"{quote_local_part(typed.username)}@{typed.domain}"
        try:
            address = _ascii_domain(canonical_recipient(address))
        except (InvalidAddress, InvalidDomainName):
            raise refusal from None
        # External local parts keep their case (only the remote server may fold it).
        found.append(Address(_display_name(typed.display_name), *_split_address(address)))
    return found


def _ascii_domain(address: str) -> str:
    """An address with an ASCII local part and an internationalized domain, with the
    domain as its A-label (IDNA 2008): the same address, and one that any relay can
    carry, where the U-label needs SMTPUTF8 all the way. A non-ASCII local part
    needs SMTPUTF8 anyway and is kept as typed."""
    local, _at, domain = address.rpartition("@")
    if not local.isascii() or domain.isascii():
        return address
    return f"{local}@{a_label(domain)}"


def parse_addresses(text: str) -> list[str]:
    """The addresses of a To/Cc/Bcc field (`parse_field` without the names)."""
    return [typed.addr_spec for typed in parse_field(text)]


def display_names(*fields: str) -> dict[str, str]:
    """The names typed in `fields` by address (lower-case), the first one for each."""
    names: dict[str, str] = {}
    for text in fields:
        for entry in parse_field(text):
            if entry.display_name:
                names.setdefault(entry.addr_spec.lower(), entry.display_name)
    return names


def one_line(text: str, limit: int = MAX_SUBJECT) -> str:
    """A header value from a form field: printable, on one line, bounded, and never an
    encoded word (a reply's subject is the other party's text; gateway.mimepolicy)."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return mimepolicy.no_encoded_words(flat[:limit])


def _message_id(value: str) -> bool:
    """A well-formed id that no header parser reads as an encoded word (gateway.mimepolicy)."""
    return _MESSAGE_ID.fullmatch(value) is not None and "=?" not in value


def message_id_or_empty(value: str) -> str:
    value = value.strip()
    return value if _message_id(value) else ""


def references_or_empty(value: str) -> str:
    ids = [v for v in value.split() if _message_id(v)]
    return " ".join(ids[-20:])


def new_send_token() -> str:
    """A compose form's token: 128 random bits, the local part of its Message-ID."""
    return secrets.token_hex(16)


def send_token_or_new(value: str) -> str:
    """A posted send token if well-formed, else a new one (the form still works)."""
    value = value.strip()
    return value if _SEND_TOKEN.fullmatch(value) else new_send_token()


def send_token_of(message_id: str) -> str:
    """The send token inside a Message-ID made by `message_id_of` (a draft's, reopened),
    else a new one."""
    return send_token_or_new(message_id.strip().removeprefix("<").partition("@")[0])


def message_id_of(outgoing: Outgoing) -> str:
    """The Message-ID the message goes out with: from its send token when it has a
    well-formed one (a form posted twice is one message), else a new random one."""
    token = outgoing.send_token
    if _SEND_TOKEN.fullmatch(token) is None:
        token = new_send_token()
    return f"<{token}@{domain_of(outgoing.sender)}>"


def attachment_type(claimed: str) -> tuple[str, str]:
    """The type an upload is sent as: what the browser claimed, when it is a plain MIME
    type; else application/octet-stream. A container type (multipart/*, message/*) is
    never a claim to take: its body would be base64, which RFC 2045 forbids for them,
    and readers differ on what such a part holds (a nested message, or its bytes)."""
    maintype, _, subtype = claimed.strip().lower().partition("/")
    if (
        _TOKEN.fullmatch(maintype) is None
        or _TOKEN.fullmatch(subtype) is None
        or maintype in ("multipart", "message")
    ):
        return "application", "octet-stream"
    return maintype, subtype


def build(
    outgoing: Outgoing,
    *,
    now: dt.datetime,
    include_bcc: bool = False,
    message_id: str | None = None,
) -> bytes:
    """The MIME message in wire form. Bcc only when asked (for a draft, which only its
    author can read); the lock as the control header the pipeline reads and strips."""
    message = EmailMessage(policy=mimepolicy.DEFAULT)
    message["From"] = outgoing.sender
    for name, addresses in (
        ("To", outgoing.to),
        ("Cc", outgoing.cc),
        ("Bcc", outgoing.bcc if include_bcc else []),
    ):
        if addresses:
            message[name] = _mailboxes(addresses, outgoing.names)
    message["Subject"] = one_line(outgoing.subject)
    message["Date"] = email.utils.format_datetime(now.astimezone(dt.UTC))
    message["Message-ID"] = message_id or message_id_of(outgoing)
    in_reply_to = message_id_or_empty(outgoing.in_reply_to)
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
    references = references_or_empty(outgoing.references)
    if references:
        message["References"] = references
    if outgoing.encrypt:
        message[ENCRYPT_HEADER] = "yes"
    text = outgoing.text.replace("\r\n", "\n").replace("\r", "\n")
    if text.isascii():
        message.set_content(text)
    else:
        # Quoted-printable travels through any relay, 8BITMIME or not.
        message.set_content(text, cte="quoted-printable")
    for index, upload in enumerate(outgoing.attachments):
        maintype, subtype = attachment_type(upload.content_type)
        message.add_attachment(
            upload.data,
            maintype=maintype,
            subtype=subtype,
            filename=safe_filename(upload.filename, index),
        )
    addresses = [outgoing.sender, *outgoing.to, *outgoing.cc, *outgoing.bcc]
    # An address with a non-ASCII local part cannot be written as an encoded word.
    policy = mimepolicy.SMTP if all(a.isascii() for a in addresses) else mimepolicy.SMTPUTF8
    try:
        return message.as_bytes(policy=policy)
    except mimepolicy.HeaderInjection:
        raise ComposeError(HEADER_REFUSED) from None


def _mailboxes(addresses: list[str], names: dict[str, str]) -> list[Address]:
    """Header mailboxes, given as objects: no typed text is parsed again as a header."""
    try:
        return [
            Address(_display_name(names.get(a.lower(), "")), *_split_address(a)) for a in addresses
        ]
    except (ValueError, IndexError):  # an address the header parser cannot hold
        raise ComposeError(HEADER_REFUSED) from None


def _split_address(address: str) -> tuple[str, str]:
    """(local part, domain): given apart, a non-ASCII local part (RFC 6531) is no defect;
    a quoted local part without its quotes (the header writes them again)."""
    local, _at, domain = address.rpartition("@")
    return unquote_local_part(local), domain


def bcc_field(outgoing: Outgoing) -> bytes:
    """The Bcc field the sender's Sent copy keeps (no other copy has it), folded as
    `build` folds the others; empty without Bcc recipients."""
    if not outgoing.bcc:
        return b""
    field_only = EmailMessage(policy=mimepolicy.DEFAULT)
    field_only["Bcc"] = _mailboxes(outgoing.bcc, outgoing.names)
    policy = mimepolicy.SMTP if all(a.isascii() for a in outgoing.bcc) else mimepolicy.SMTPUTF8
    try:
        return field_only.as_bytes(policy=policy).removesuffix(b"\r\n")
    except mimepolicy.HeaderInjection:
        raise ComposeError(HEADER_REFUSED) from None


def check(session: so.Session, runtime: Runtime, account_id: int, outgoing: Outgoing) -> None:
    """Everything the SMTP edge would refuse before DATA, as errors the page can show."""
    owned = accounts.owned_addresses(session, account_id)
    try:
        sender = normalize_address(outgoing.sender)
    except InvalidAddress:
        sender = ""
    if sender not in owned:
        raise ComposeError("You cannot send from {address}.", address=outgoing.sender[:320])
    outgoing.sender = sender
    recipients = outgoing.recipients
    if not recipients:
        raise ComposeError("Add at least one recipient.")
    limit = runtime.settings.smtp.max_recipients
    if len(recipients) > limit:
        raise ComposeError("A message can have at most {limit} recipients.", limit=limit)
    for rcpt in recipients:
        if accounts.is_hosted(session, rcpt) and accounts.find_address(session, rcpt) is None:
            raise ComposeError("There is no mailbox {address} here.", address=rcpt)
    check_attachments(outgoing, runtime.settings.webmail.max_attachment_bytes)


def check_attachments(outgoing: Outgoing, limit: int) -> None:
    """The attachments within `limit`: for a draft too, which is read back and sent later
    (an upload is read only to limit + 1 bytes, so past it the bytes are not all there)."""
    if outgoing.attachment_bytes > limit:
        raise ComposeError("The attachments are larger than {limit} bytes.", limit=limit)


def send(
    runtime: Runtime,
    account_id: int,
    outgoing: Outgoing,
    *,
    password: str | None,
    client_ip: str,
    now: dt.datetime,
) -> str:
    """Check, build and submit; the queue id. Raises ComposeError or RejectMessage.

    Blocking, and it opens its own transactions: call it with no write pending
    in the caller's session (SQLite has one writer).
    """
    with db.read_only(runtime.sessions) as session:
        check(session, runtime, account_id, outgoing)
    message_id = message_id_of(outgoing)
    if _SEND_TOKEN.fullmatch(outgoing.send_token) is not None:
        with db.read_only(runtime.sessions) as session:
            if _sent_copies(session, outgoing.sender, message_id):
                raise AlreadySent(message_id)
    raw = build(outgoing, now=now, message_id=message_id)
    limit = runtime.settings.smtp.max_message_size
    if len(raw) > limit:
        raise ComposeError("The message is larger than {limit} bytes.", limit=limit)
    submission = Submission(
        sender=Sender(account_id=account_id, address=outgoing.sender),
        envelope_from=outgoing.sender,
        recipients=outgoing.recipients,
        raw=raw,
        client=ClientInfo(helo=WEBMAIL_HELO, ip=client_ip, protocol=WEBMAIL_PROTOCOL),
        received_at=now,
        password=password or None,
    )
    submission.sent_headers = bcc_field(outgoing)
    submission.finalizers.append(_plain_sent_copy(submission))
    submission.finalizers.append(_sent_once(submission, message_id))
    return submit(runtime, submission)


def _plain_sent_copy(submission: Submission) -> Callable[[so.Session], None]:
    def file_sent_copy(session: so.Session) -> None:
        if any(copy.destination == "sent" for copy in submission.copies):
            return  # the pipeline made an encrypted one
        if submission.encrypt:
            # With the lock on, a Sent copy in clear is never the fallback (DESIGN:
            # plaintext of a message to be encrypted never reaches disk): the whole
            # message is refused, and the page keeps what was written.
            log.error("no encrypted Sent copy for %s: not sent", submission.queue_id)
            raise RejectMessage(TEMPORARY_FAILURE)
        address = accounts.find_address(session, submission.sender.address)
        if address is None:
            raise RejectMessage(UNKNOWN_LOCAL_RECIPIENT.format(rcpt=submission.sender.address))
        mailbox.store(
            session,
            address,
            submission.for_sender(submission.raw),
            queue_id=submission.queue_id,
            envelope_from=submission.envelope_from,
            now=submission.received_at,
            folder=mailbox.SENT,
        )

    return file_sent_copy


def _sent_copies(session: so.Session, sender: str, message_id: str) -> int:
    """How many Sent copies of `sender`'s carry `message_id`."""
    count = session.scalar(
        sa.select(sa.func.count())
        .select_from(MailboxMessage)
        .join(AddressRow, MailboxMessage.address_id == AddressRow.id)
        .where(
            AddressRow.address == sender,
            MailboxMessage.folder == mailbox.SENT,
            MailboxMessage.message_id == message_id,
        )
    )
    return count or 0


def _sent_once(submission: Submission, message_id: str) -> Callable[[so.Session], None]:
    """The last word in the message's transaction: its Sent copy is the only one with
    its Message-ID, or nothing of it is written. Two posts racing past the check in
    `send` meet here: the sender's address row is locked first (PostgreSQL; SQLite
    has one writer anyway), so the second counts after the first committed."""

    def refuse_a_second(session: so.Session) -> None:
        session.execute(
            sa.select(AddressRow.id)
            .where(AddressRow.address == submission.sender.address)
            .with_for_update()
        )
        if _sent_copies(session, submission.sender.address, message_id) > 1:
            raise AlreadySent(message_id)

    return refuse_a_second
