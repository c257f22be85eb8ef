"""Step `check-header-sender`: the From (and Sender) a recipient sees is the sender's own.

MAIL FROM is checked at the SMTP edge, but recipients' programs show the
`From:` header, so without this step any hosted user could write any author.
Every address the header shows must belong to the authenticated account: the
mailboxes the RFC 5322 parser reads (groups included), and also anything that
merely looks like an address in the decoded text (a display name, a comment,
an encoded word, a full-width at sign), because clients show those too and a
phishing From puts the victim's address exactly there. A hosted IDN address is
owned under both forms of its domain, A-label and U-label (gateway.addresses).

The decisions for odd shapes:
- no From at all: accepted; `add-missing-headers` writes the envelope sender
  (as Postfix and sendmail do for submissions, and the README's first example
  relies on);
- several From or Sender fields: refused (RFC 5322 allows one; clients disagree
  on which they show);
- several From mailboxes: each must be owned, and a Sender naming one owned
  mailbox must be present (RFC 5322 §3.6.2);
- group syntax: its members count as mailboxes; a From that names no mailbox at
  all (an empty group, an empty field) is refused, as the recipient could not
  see who wrote;
- an address the parser cannot read (`<<<`, an encoded word standing for the
  address itself) is refused rather than guessed;
- a From or Sender after a line that is no field, before the empty line, must
  show owned addresses as well: the pipeline and Python's parser take it for
  body, but IMAP servers and many mail programs read up to the empty line as
  header.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Collection
from email.headerregistry import AddressHeader, HeaderRegistry

from gateway import rawheaders
from gateway.addresses import InvalidAddress, normalize_address, owned_form
from gateway.pipeline.context import Submission
from gateway.pipeline.errors import RejectMessage
from gateway.smtp_codes import (
    HEADER_FIELD_REPEATED,
    HEADER_FROM_NEEDS_SENDER,
    HEADER_FROM_NOT_OWNED,
    HEADER_FROM_UNREADABLE,
    HEADER_SENDER_NOT_ONE,
    HEADER_SENDER_NOT_OWNED,
)

STEP = "check-header-sender"
_REGISTRY = HeaderRegistry()
# Something a reader would take for an address, in decoded (NFKC) text.
_LOOKS_LIKE_ADDRESS = re.compile(r"[^\s<>()\[\]\"',;:@\\]+@[^\s<>()\[\]\"',;:@\\]+")
_ENCODED_WORD = re.compile(r"=\?[^?\s]*\?[^?\s]*\?[^?\s]*\?=")
_FIELD_PAST_END = re.compile(rb"[ \t]*(from|sender)[ \t]*:", re.IGNORECASE)
_MAX_SHOWN = 200
_MEMO_LIMIT = 1024  # bytes of a field whose parse is remembered


def check_header_sender(submission: Submission, owned: Collection[str]) -> None:
    """Raise RejectMessage (553 5.7.1) unless From and Sender show only `owned` addresses."""
    mine = {a.lower() for a in owned}
    # As a lenient reader sees them: `From : x` after the last field we parse counts too.
    fields = rawheaders.lenient_headers(submission.raw)
    from_fields = [f for f in fields if f.name.lower() == "from"]
    sender_fields = [f for f in fields if f.name.lower() == "sender"]
    for name, found in (("From", from_fields), ("Sender", sender_fields)):
        if len(found) > 1:
            raise RejectMessage(HEADER_FIELD_REPEATED.format(count=len(found), field=name))
    if from_fields:
        _check_from(from_fields[0], sender_fields, mine)
    _check_past_header_end(submission.raw, mine)
    # No From: add-missing-headers writes the envelope sender.


def _check_from(
    from_field: rawheaders.RawHeader, sender_fields: list[rawheaders.RawHeader], mine: set[str]
) -> None:
    """The From's mailboxes are owned; a Sender, if any, names one owned mailbox."""
    authors = _mailboxes(from_field, "From", mine, HEADER_FROM_NOT_OWNED)
    if sender_fields:
        senders = _mailboxes(sender_fields[0], "Sender", mine, HEADER_SENDER_NOT_OWNED)
        if len(senders) != 1:
            raise RejectMessage(HEADER_SENDER_NOT_ONE)
    elif len(authors) > 1:
        raise RejectMessage(HEADER_FROM_NEEDS_SENDER)


def _check_past_header_end(raw: bytes, mine: set[str]) -> None:
    """A From or Sender that only some readers take for a header field (after a line
    that is no field, before the empty line) must show owned addresses too."""
    past = list(rawheaders.lines_past_header_end(raw))
    for index, (_number, line) in enumerate(past):
        match = _FIELD_PAST_END.match(line)
        if not match:
            continue
        folded = [line]
        for _n, more in past[index + 1 :]:
            if more[:1] not in (b" ", b"\t"):
                break
            folded.append(more)
        name = match.group(1).decode("ascii").capitalize()
        field = rawheaders.RawHeader(name, b"\r\n".join(folded) + b"\r\n")
        not_owned = HEADER_FROM_NOT_OWNED if name == "From" else HEADER_SENDER_NOT_OWNED
        _mailboxes(field, name, mine, not_owned)


def _mailboxes(field: rawheaders.RawHeader, name: str, mine: set[str], not_owned: str) -> list[str]:
    """The field's mailboxes, each checked to be owned, as are address-like texts in it."""
    addresses: list[str] = []
    for spec in _addr_specs(name, field.raw):
        try:
            address = normalize_address(spec)
        except InvalidAddress:
            raise RejectMessage(HEADER_FROM_UNREADABLE.format(field=name)) from None
        if owned_form(address, mine) is None:
            raise RejectMessage(not_owned.format(address=_shown(spec)))
        addresses.append(address)
    if not addresses:
        raise RejectMessage(HEADER_FROM_UNREADABLE.format(field=name))
    for shown in _LOOKS_LIKE_ADDRESS.findall(unicodedata.normalize("NFKC", field.value)):
        if owned_form(shown.rstrip(".").lower(), mine) is None:
            raise RejectMessage(not_owned.format(address=_shown(shown)))
    return addresses


def _addr_specs(name: str, raw: bytes) -> tuple[str, ...]:
    """The addr-specs of the field's mailboxes; a sender's From line recurs in every
    message, so a short one's parse is remembered (the parse is a pure function of it)."""
    if len(raw) > _MEMO_LIMIT:
        return _parsed_addr_specs(name, raw)
    return _memo_addr_specs(name, raw)


def _parsed_addr_specs(name: str, raw: bytes) -> tuple[str, ...]:
    return tuple(mailbox.addr_spec for mailbox in _parse(raw, name).addresses)


_memo_addr_specs = functools.lru_cache(maxsize=1024)(_parsed_addr_specs)


def _parse(raw: bytes, name: str) -> AddressHeader:
    """The structured header, parsed from the raw value with each encoded word made a
    plain word: RFC 2047 §5 allows one only in a display name or a comment, never in an
    address, so the addresses are what a reader sees. (Decoded, a name may hold a CR or
    LF, which the parser refuses; the decoded text is checked separately.)"""
    text = raw.decode("utf-8", "surrogateescape")
    value = text.split(":", 1)[1] if ":" in text else ""
    value = _ENCODED_WORD.sub("encoded-word", value.replace("\r", "").replace("\n", ""))
    try:
        header = _REGISTRY(name, value)
    except (ValueError, IndexError, TypeError, RecursionError):
        # RecursionError: the parser recurses once per nested comment ("((((…").
        raise RejectMessage(HEADER_FROM_UNREADABLE.format(field=name)) from None
    if not isinstance(header, AddressHeader):  # pragma: no cover  (From/Sender always are)
        raise RejectMessage(HEADER_FROM_UNREADABLE.format(field=name))
    return header


def _shown(text: str) -> str:
    """A user-written address, safe inside a one-line SMTP reply: printable ASCII, bounded."""
    cleaned = "".join(ch if " " < ch < "\x7f" else "?" for ch in text)
    return "<" + cleaned[:_MAX_SHOWN] + ">"
