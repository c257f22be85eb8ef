"""The autoresponder: an away message per hosted address, as the reference mail host has it.

Several messages can be saved per address, one is active at a time. It answers
within its start/end window and on its weekdays, at most once per sender per 7
days (a reset forgets who was answered), never to excluded addresses or
`@domain` entries, and never where RFC 3834 §2 says a personal responder must not
or should not answer (`rfc3834_allows`):

- `Auto-Submitted` other than `no` in any of the message's fields of that name;
- `Precedence: bulk|list|junk`, any `List-*` field (RFC 2369, RFC 2919), or
  Exchange's `X-Auto-Response-Suppress: OOF|All`;
- an empty return path, or one that is a program's (MAILER-DAEMON, LISTSERV,
  majordomo, owner-*, *-request, *-owner, *-bounces);
- mail from the account itself (any of its addresses or their aliases);
- mail that names none of the account's addresses or aliases in To, Cc, Bcc,
  Resent-To, Resent-Cc or Resent-Bcc: it came by a Bcc or through a list, and an
  away notice would tell the list or the hidden sender.

The header fields are read as a lenient reader (Postfix, RFC 5322 §4.5.3) reads
them, obsolete syntax included (`Auto-Submitted : auto-replied`,
`rawheaders.lenient_headers`): a field another program takes as a loop marker is one
here too. It answers encrypted mail too: it needs only the headers, which stay in
clear.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
import secrets
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway import local_delivery, mails, mimepolicy, rawheaders
from gateway.addresses import domain_of, other_form
from gateway.models import Address, Alias, AutoreplySent, Autoresponder

REPLY_INTERVAL = dt.timedelta(days=7)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALL_WEEKDAYS = (1 << 7) - 1
_BULK_PRECEDENCE = frozenset({"bulk", "list", "junk"})
_MESSAGE_ID = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]{1,250}@[\x21-\x3b\x3d\x3f-\x7e]{1,250}>")
# The fields a reply quotes (the first of each is used).
_QUOTED = frozenset({"subject", "message-id"})
# RFC 3834 §2: the fields that name the recipients of the message.
_RECIPIENT_FIELDS = frozenset({"to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc"})
# Microsoft's MS-OXCMAIL 2.2.3.2.20: the sender asks for no out-of-office reply.
_SUPPRESS_TOKENS = frozenset({"oof", "all"})
_TOKEN = re.compile(r"[^\s;,()]+")


class AutoresponderError(ValueError):
    """A request about autoresponders that cannot be carried out; the text is safe to show."""


@dataclass(frozen=True)
class Incoming:
    """What the decision needs from a delivered message: the envelope and a few headers."""

    envelope_from: str
    recipient: str
    headers: dict[str, str]  # the first Subject and Message-ID, lower-cased names, decoded
    auto_submitted: tuple[str, ...] = ()  # every Auto-Submitted value
    precedence: tuple[str, ...] = ()
    response_suppress: tuple[str, ...] = ()  # X-Auto-Response-Suppress values
    list_fields: bool = False  # any List-* field
    named: frozenset[str] = field(default_factory=frozenset)  # To, Cc, Bcc, Resent-*, lower

    @classmethod
    def from_raw(cls, raw: bytes, envelope_from: str, recipient: str) -> Incoming:
        found: dict[str, str] = {}
        values: dict[str, list[str]] = {}
        named: set[str] = set()
        list_fields = False
        for raw_field in rawheaders.lenient_headers(raw):
            key = raw_field.name.lower()
            if key in _QUOTED:
                found.setdefault(key, raw_field.value)
            elif key in ("auto-submitted", "precedence", "x-auto-response-suppress"):
                values.setdefault(key, []).append(raw_field.value)
            elif key in _RECIPIENT_FIELDS:
                named.update(_addresses(raw_field.clean_value))
            elif key.startswith("list-"):
                list_fields = True
        return cls(
            envelope_from=envelope_from,
            recipient=recipient,
            headers=found,
            auto_submitted=tuple(values.get("auto-submitted", ())),
            precedence=tuple(values.get("precedence", ())),
            response_suppress=tuple(values.get("x-auto-response-suppress", ())),
            list_fields=list_fields,
            named=frozenset(named),
        )


def _addresses(value: bytes) -> Iterable[str]:
    """The addresses of an address-list field, lower-cased. Read from the raw value, so
    an encoded word in a display name stays a display name. A sender can name anyone
    in To anyway: the rule keeps honest Bcc and list mail unanswered, no more."""
    text = value.decode("utf-8", "surrogateescape")
    for _name, address in email.utils.getaddresses([text]):
        if "@" in address:
            yield address.strip().lower()


def rfc3834_allows(incoming: Incoming, own: Collection[str] = ()) -> bool:
    """Whether RFC 3834 §2 lets a personal automatic reply go to this message.

    `own` holds the account's addresses and aliases (lower-cased, both IDN forms); the
    recipient address alone when it is empty.
    """
    names = frozenset(own) or frozenset({incoming.recipient.lower()})
    sender = incoming.envelope_from.strip().lower()
    if not sender or sender in names or _machine_sender(sender):
        return False
    if any(_first_token(v) != "no" for v in incoming.auto_submitted):
        return False
    if any(_first_token(v) in _BULK_PRECEDENCE for v in incoming.precedence):
        return False
    for value in incoming.response_suppress:
        if _SUPPRESS_TOKENS & {t.lower() for t in _TOKEN.findall(value)}:
            return False
    if incoming.list_fields:
        return False
    return not incoming.named.isdisjoint(names)


def _first_token(value: str) -> str:
    """`auto-replied` of `auto-replied; owner-email=…`, `bulk` of `Bulk (newsletter)`;
    "" for an empty value, which is then no `no`."""
    token = _TOKEN.match(value.strip())
    return token.group().lower() if token else ""


# RFC 3834 §2: senders that are programs, not people (bounce daemons, list managers).
_MACHINE_LOCAL_PARTS = frozenset({"mailer-daemon", "listserv", "majordomo"})
_MACHINE_PREFIXES = ("owner-",)
_MACHINE_SUFFIXES = ("-request", "-owner", "-bounces")


def _machine_sender(sender: str) -> bool:
    local = sender.rpartition("@")[0] if "@" in sender else sender  # "MAILER-DAEMON" alone
    local = local.strip('"')
    return (
        local in _MACHINE_LOCAL_PARTS
        or local.startswith(_MACHINE_PREFIXES)
        or local.endswith(_MACHINE_SUFFIXES)
    )


def account_names(session: so.Session, account_id: int) -> frozenset[str]:
    """Every address of the account and every alias of them, lower-cased, in both IDN
    forms: the names under which mail reaches this person."""
    addresses = session.scalars(sa.select(Address.address).where(Address.account_id == account_id))
    aliases = session.scalars(
        sa.select(Alias.alias)
        .join(Address, Alias.address_id == Address.id)
        .where(Address.account_id == account_id)
    )
    names: set[str] = set()
    for name in (*addresses, *aliases):
        names.add(name.lower())
        if (other := other_form(name.lower())) is not None:
            names.add(other)
    return frozenset(names)


def in_window(responder: Autoresponder, now: dt.datetime) -> bool:
    if responder.starts_at is not None and now < responder.starts_at:
        return False
    if responder.ends_at is not None and now >= responder.ends_at:
        return False
    return bool(responder.weekdays & (1 << now.weekday()))


def excluded(responder: Autoresponder, sender: str) -> bool:
    sender = sender.lower()
    for entry in parse_exclusions(responder.excluded):
        if entry.startswith("@"):
            if domain_of(sender) == entry[1:]:
                return True
        elif entry == sender:
            return True
    return False


def parse_exclusions(text: str) -> list[str]:
    return [e.strip().lower() for e in text.replace(",", "\n").splitlines() if e.strip()]


def active_responder(session: so.Session, address_id: int) -> Autoresponder | None:
    return session.scalar(
        sa.select(Autoresponder).where(
            Autoresponder.address_id == address_id, Autoresponder.active.is_(True)
        )
    )


def activate(session: so.Session, responder: Autoresponder) -> None:
    """Make `responder` the address's one active message (the others are switched off)."""
    session.execute(
        sa.update(Autoresponder)
        .where(Autoresponder.address_id == responder.address_id, Autoresponder.id != responder.id)
        .values(active=False)
    )
    session.flush()
    responder.active = True
    session.flush()


def reset(session: so.Session, address_id: int) -> int:
    """Forget who was answered, so everyone gets the message again; the count forgotten."""
    result = session.execute(sa.delete(AutoreplySent).where(AutoreplySent.address_id == address_id))
    return int(getattr(result, "rowcount", 0) or 0)


def answered_recently(session: so.Session, address_id: int, sender: str, now: dt.datetime) -> bool:
    last = session.scalar(
        sa.select(AutoreplySent.sent_at).where(
            AutoreplySent.address_id == address_id, AutoreplySent.sender == sender.lower()
        )
    )
    return last is not None and now - last < REPLY_INTERVAL


def respond(
    session: so.Session,
    address: Address,
    raw: bytes,
    *,
    envelope_from: str,
    now: dt.datetime,
    queue_id: str,
) -> bool:
    """Answer one delivered message if the address's active autoresponder should; True if so.

    Runs in the delivery's transaction: the reply and the record of it commit with it.
    """
    responder = active_responder(session, address.id)
    if responder is None:
        return False
    incoming = Incoming.from_raw(raw, envelope_from, address.address)
    sender = envelope_from.lower()
    if (
        not in_window(responder, now)
        or not rfc3834_allows(incoming, account_names(session, address.account_id))
        or excluded(responder, sender)
        or answered_recently(session, address.id, sender, now)
    ):
        return False
    reply_from = responder.reply_from.address if responder.reply_from else address.address
    reply = build_reply(responder, incoming, reply_from=reply_from, now=now)
    _remember(session, address.id, sender, now)
    # RFC 3834 §3.3: an automatic reply goes out with an empty return path; to a
    # hosted sender it is stored in their mailbox, never relayed.
    local_delivery.deliver_generated(
        session, reply, sender="", recipient=sender, queue_id=queue_id, now=now
    )
    return True


def _remember(session: so.Session, address_id: int, sender: str, now: dt.datetime) -> None:
    row = session.scalar(
        sa.select(AutoreplySent).where(
            AutoreplySent.address_id == address_id, AutoreplySent.sender == sender
        )
    )
    if row is None:
        session.add(AutoreplySent(address_id=address_id, sender=sender, sent_at=now))
    else:
        row.sent_at = now


def build_reply(
    responder: Autoresponder,
    incoming: Incoming,
    *,
    reply_from: str,
    now: dt.datetime,
) -> bytes:
    """A plain-text reply marked `Auto-Submitted: auto-replied` and threaded to the original."""
    original_subject = incoming.headers.get("subject", "")
    subject = _one_line(f"{responder.subject} {original_subject}")[:300]
    message = EmailMessage(policy=mimepolicy.DEFAULT)
    message["From"] = mails.check_header("From", reply_from)
    message["To"] = mails.check_header("To", incoming.envelope_from)
    message["Subject"] = subject
    message["Date"] = email.utils.format_datetime(now.astimezone(dt.UTC))
    message["Message-ID"] = f"<{secrets.token_hex(16)}@{domain_of(reply_from)}>"
    message["Auto-Submitted"] = "auto-replied"
    message_id = incoming.headers.get("message-id", "").strip()
    if _MESSAGE_ID.fullmatch(message_id) and "=?" not in message_id:
        message["In-Reply-To"] = message_id
        message["References"] = message_id
    message.set_content(responder.body)
    return mails.to_bytes(message)


def _one_line(text: str) -> str:
    """A header value from untrusted text: printable characters on one line, spaces folded,
    and no encoded-word opener left to re-fold into a line break (CVE-2024-6923)."""
    flat = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return mimepolicy.no_encoded_words(flat)
