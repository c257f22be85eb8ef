"""Header protection (RFC 9788): the header fields a signed and encrypted message signs with
its text, and how a reader compares them with the fields the message arrived with.

Without it the signature covers the body only: a correspondent who received a
hosted user's signed mail could decrypt it and send the signed part on to someone
else under a new Subject, To or Date, and the reader would show those as signed.

What the gateway writes, on the root of the cryptographic payload (the entity it
encrypts, gateway.pipeline.pgpmime):
- a copy of every header field a writer sets that also travels in clear (From,
  To, Cc, Subject, Date, Message-ID, Reply-To, ...; never Bcc, and not the
  transport's Received or Autocrypt), as it is in the outer header;
- for each of them an `HP-Outer:` record of the value the outer header carries,
  which here is the same: the gateway keeps every such field readable outside
  (DESIGN.md: search over encrypted mail matches subjects only), so RFC 9788's
  policy is `hcp_no_confidentiality`; without the records a reader would take the
  fields for confidential;
- `hp="cipher"` on its Content-Type, and `protected-headers="v1"`, the parameter of
  the older Autocrypt draft that Thunderbird and K-9 read.

Everything is built from the fields the pipeline's one header split has parsed
already (gateway.rawheaders): bytes joined to bytes, no MIME parse.

What a reader does with a decrypted entity (gateway.reading): `is_protected`
says whether its signer signed header fields at all; `shown` gives them, and
nothing from outside is merged in (RFC 9788 §4.2); `arrived_otherwise` says
whether the fields the message arrived with are other than the ones the writer
recorded in `HP-Outer` (or, with no records, than the protected ones); `in_clear`
which of them the writer put outside as they are, so that the message list may show
them (gateway.reading sets the list columns from them when a reader verified them).
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Iterable, Sequence
from email.message import EmailMessage

from gateway import rawheaders

# The payload root's Content-Type parameters that say it carries protected fields.
PARAMETERS = b'hp="cipher"; protected-headers="v1"'
DEFAULT_CONTENT_TYPE = b"Content-Type: text/plain; charset=us-ascii; " + PARAMETERS + b"\r\n"
OUTER_RECORD = "HP-Outer"
# One parameter of a Content-Type value, a quoted value with `;` in it included.
_PARAMETER = re.compile(rb';[ \t]*([^ \t=;]*)[ \t]*=[ \t]*("(?:[^"\\]|\\.)*"|[^;]*)')
_OURS = {b"hp", b"protected-headers"}

# What a reader compares between the outer header and the signed one.
COMPARED = ("From", "To", "Cc", "Reply-To", "Subject", "Date")
_ADDRESS_FIELDS = {"from", "to", "cc", "reply-to"}


# --- writing ----------------------------------------------------------------------------


def content_type(field: rawheaders.RawHeader) -> bytes:
    """The payload root's Content-Type field with the header-protection parameters.

    Any `hp` or `protected-headers` parameter the submitted message had goes: the
    gateway's claim is the only one the payload makes, so no reader picks another."""
    value = field.clean_value
    if b"hp" in value.lower() or b"protected-headers" in value.lower():
        value = _PARAMETER.sub(
            lambda m: b"" if m.group(1).lower() in _OURS else m.group(0), value
        ).strip()
    return rawheaders.fold(b"Content-Type", value.rstrip(b"; \t") + b"; " + PARAMETERS)


def outer_record(field: rawheaders.RawHeader, line: bytes) -> bytes:
    """`HP-Outer: Name: value`, the value the outer header carries for `field`, whose
    outer form is `line` (`field.canonical()`): a line that still fits within 78
    characters behind the record's name is taken as it is, else it is folded anew."""
    if len(line) <= rawheaders.FOLD_AT - len(b"HP-Outer: ") + 2 and line.count(b"\n") == 1:
        return b"HP-Outer: " + line
    return rawheaders.fold(b"HP-Outer", field.name.encode("ascii") + b": " + field.clean_value)


# --- reading ----------------------------------------------------------------------------


def is_protected(entity: EmailMessage) -> bool:
    """Whether the decrypted entity declares protected header fields (RFC 9788 §2.1.1)."""
    return entity.get_param("hp", header="content-type") in ("cipher", "clear")


def shown(entity: EmailMessage, names: Iterable[str]) -> dict[str, str]:
    """The protected fields of `names` that the entity has, as str (decoded)."""
    return {name: str(entity[name]) for name in names if entity[name] is not None}


def arrived_otherwise(outer: EmailMessage, entity: EmailMessage) -> bool:
    """Whether a field of COMPARED arrived other than its writer put it outside.

    The writer's word is the entity's `HP-Outer` records when it has any (a field
    with none was meant to be absent outside); else the protected fields themselves.
    A record's value is parsed as the outer field of its name is, so both read alike;
    addresses are then compared as sets of addr-specs, dates as instants, the rest
    with white space runs counted as one space (a transport may refold a field)."""
    expected = _outer_records(entity)
    if expected is None:
        expected = {name.lower(): list(entity.get_all(name) or []) for name in COMPARED}
    for name in COMPARED:
        arrived = list(outer.get_all(name) or [])
        if _normal(name, arrived) != _normal(name, expected.get(name.lower(), [])):
            return True
    return False


def in_clear(entity: EmailMessage) -> frozenset[str]:
    """The fields of COMPARED (lower case) that the writer put outside as they are inside,
    by its `HP-Outer` records: those a clear store may hold (a message list). A field the
    writer kept confidential (another record, or none) is not among them, and with no
    records at all none is: such a writer's intent cannot be told from a replay."""
    records = _outer_records(entity)
    if records is None:
        return frozenset()
    return frozenset(
        name.lower()
        for name in COMPARED
        if _normal(name, list(entity.get_all(name) or []))
        == _normal(name, records.get(name.lower(), []))
    )


def _outer_records(entity: EmailMessage) -> dict[str, list[object]] | None:
    """The entity's `HP-Outer` records by field name (lower case), each value parsed as
    the outer field of its name is; None when it has none."""
    records = [value for name, value in entity.raw_items() if name.lower() == "hp-outer"]
    if not records:
        return None
    expected: dict[str, list[object]] = {}
    for record in records:
        name, _colon, value = str(record).partition(":")
        field = entity.policy.header_fetch_parse(name.strip(), value.lstrip(" \t"))
        expected.setdefault(name.strip().lower(), []).append(field)
    return expected


def _normal(name: str, fields: Sequence[object]) -> object:
    if name.lower() in _ADDRESS_FIELDS:
        found: set[str] = set()
        for field in fields:
            addresses = getattr(field, "addresses", None)
            if addresses is None:  # a value the address parser gave up on
                found.update(a for _n, a in email.utils.getaddresses([str(field)]))
            else:
                found.update(a.addr_spec for a in addresses)
        return sorted(a.lower() for a in found)
    if name.lower() == "date":
        return [getattr(f, "datetime", None) or " ".join(str(f).split()) for f in fields]
    return [" ".join(str(f).split()) for f in fields]
