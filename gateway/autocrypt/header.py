"""The `Autocrypt:` header (Level 1, section 2.1) in, `Autocrypt-Gossip:` (section 2.7) out.

A header is `addr=<address>; [prefer-encrypt=mutual;] keydata=<base64>`. The rules
followed here: an unknown attribute whose name does not start with `_` makes the
header invalid (it is "critical"); `_`-attributes are ignored; `addr` must be the
message's single From address (compared case-insensitively); a message with more
than one valid header for that address counts as having none. Everything here is
plain string work on bounded input; the key itself is vetted elsewhere, in the
sandbox.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
from dataclasses import dataclass, field
from typing import Literal

from gateway import rawheaders

HEADER = "autocrypt"
GOSSIP = "Autocrypt-Gossip"
MAX_HEADERS = 8  # more `Autocrypt:` fields than this: the message is not looked at
PreferEncrypt = Literal["mutual", "nopreference"]


class InvalidHeader(ValueError):
    """The header does not follow the spec; the text is safe to log."""


@dataclass(frozen=True)
class AutocryptHeader:
    addr: str
    prefer_encrypt: PreferEncrypt
    keydata: bytes = field(repr=False)


def _unfold(raw: bytes) -> str:
    text = raw.decode("ascii", "replace")
    value = text.split(":", 1)[1] if ":" in text else ""
    return value.replace("\r", "").replace("\n", "")


def parse_value(value: str, *, max_key_bytes: int) -> AutocryptHeader:
    """One header's value; raises `InvalidHeader`."""
    attributes: dict[str, str] = {}
    for part in value.split(";"):
        if not part.strip():
            continue
        name, eq, content = part.partition("=")
        name = name.strip().lower()
        if not eq or not name:
            raise InvalidHeader("an attribute without a value")
        if name.startswith("_"):
            continue  # non-critical: ignored
        if name not in ("addr", "prefer-encrypt", "keydata"):
            raise InvalidHeader(f"unknown critical attribute {name[:40]!r}")
        if name in attributes:
            raise InvalidHeader(f"attribute {name} given twice")
        attributes[name] = content.strip()
    addr = attributes.get("addr", "").strip().lower()
    if not addr or "@" not in addr or len(addr) > 320 or not addr.isprintable() or " " in addr:
        raise InvalidHeader("no valid addr attribute")
    if "keydata" not in attributes:
        raise InvalidHeader("no keydata attribute")
    compact = "".join(attributes["keydata"].split())
    if len(compact) * 3 // 4 > max_key_bytes:
        raise InvalidHeader(f"keydata larger than {max_key_bytes} bytes")
    try:
        keydata = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidHeader("keydata is not base64") from None
    if not keydata:
        raise InvalidHeader("empty keydata")
    prefer: PreferEncrypt = (
        "mutual" if attributes.get("prefer-encrypt", "").lower() == "mutual" else "nopreference"
    )
    return AutocryptHeader(addr=addr, prefer_encrypt=prefer, keydata=keydata)


@dataclass(frozen=True)
class MessageFacts:
    """What Autocrypt reads from a message's headers (its body is never looked at)."""

    sender: str | None  # the single From address, lower-cased; None: not eligible
    date: dt.datetime | None
    header: AutocryptHeader | None
    problem: str = ""  # why a header present was not used (for the log)


def single_from(raw: bytes) -> str | None:
    values = [f.value for f in rawheaders.headers(raw) if f.name.lower() == "from"]
    if len(values) != 1:
        return None
    try:
        pairs = email.utils.getaddresses(values)
    except RecursionError:  # comments nested hundreds deep: no sender to learn about
        return None
    addresses = [a for _n, a in pairs if a]
    if len(addresses) != 1 or "@" not in addresses[0]:
        return None
    return addresses[0].strip().lower()


def message_date(raw: bytes) -> dt.datetime | None:
    value = rawheaders.get(raw, "Date")
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.astimezone(dt.UTC)


def read_message(raw: bytes, *, max_key_bytes: int) -> MessageFacts:
    """The From address, the Date and the one usable `Autocrypt:` header, if any."""
    sender = single_from(raw)
    date = message_date(raw)
    content_type = (rawheaders.get(raw, "Content-Type") or "").lower()
    if sender is None or content_type.startswith("multipart/report"):
        # The spec skips reports (bounces carry someone else's headers) and
        # messages that do not name exactly one sender.
        return MessageFacts(None, date, None)
    fields = [f for f in rawheaders.headers(raw) if f.name.lower() == HEADER]
    if len(fields) > MAX_HEADERS:
        return MessageFacts(sender, date, None, f"{len(fields)} Autocrypt headers")
    valid: list[AutocryptHeader] = []
    problems: list[str] = []
    for f in fields:
        try:
            parsed = parse_value(_unfold(f.raw), max_key_bytes=max_key_bytes)
        except InvalidHeader as exc:
            problems.append(str(exc))
            continue
        if parsed.addr != sender:
            problems.append("addr does not match From")
            continue
        valid.append(parsed)
    if len(valid) > 1:
        return MessageFacts(sender, date, None, "more than one valid Autocrypt header")
    return MessageFacts(sender, date, valid[0] if valid else None, "; ".join(problems))


def effective_date(date: dt.datetime | None, now: dt.datetime) -> dt.datetime:
    """The message's Date, but never later than now (Level 1, "effective date")."""
    return now if date is None or date > now else date


def _folded(name: str, address: str, key: bytes) -> bytes:
    keydata = base64.b64encode(key).decode()
    folded = "\r\n ".join(keydata[i : i + 74] for i in range(0, len(keydata), 74))
    return f"{name}: addr={address}; keydata=\r\n {folded}\r\n".encode()


def gossip_headers(keys: list[tuple[str, bytes]]) -> bytes:
    """`Autocrypt-Gossip:` fields, one per (recipient, public key), for the encrypted part."""
    return b"".join(_folded(GOSSIP, address, key) for address, key in keys)
