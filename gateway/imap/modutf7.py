"""Mailbox names in modified UTF-7 (RFC 3501 §5.1.3), decoded strictly and in bounded time.

pymap's own decoder (0.36) loops forever on a shift sequence with no closing "-"
(`SELECT "&ZZZ"`, sent even before login, held the event loop and with it every
listener of serve), and lets a bad base64 run escape as an unhandled error. This
decoder reads the name once, left to right, and raises ValueError for anything
malformed; `install` puts it where pymap's parsers call theirs, turned into
pymap's parse error, so the client gets a BAD and the server goes on.

A name is 7-bit (RFC 3501 §5.1.3, RFC 9051 §5.1.3): pymap read a raw 8-bit byte as
the Latin-1 character of that value, so a client sending UTF-8 (`CREATE "Café"`)
made a folder "CafÃ©" that no other client and no webmail user would recognise.
Raw UTF-8 is a name only after ENABLE UTF8=ACCEPT (RFC 6855), which this server
neither offers nor accepts (pymap knows no ENABLE): such a name is refused
(`EightBitName`, a BAD saying why) and nothing is created or selected.
"""

from __future__ import annotations

import binascii
import re

from pymap.parsing.command import auth as _auth_commands
from pymap.parsing.exceptions import NotParseable
from pymap.parsing.response import specials as _response_specials
from pymap.parsing.specials import mailbox as _mailbox

_BASE64 = re.compile(rb"[A-Za-z0-9+,]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_EIGHT_BIT = re.compile(rb"[\x80-\xff]")


_RUNS = re.compile(r"[\x20-\x7e]+|[^\x20-\x7e]+")


def encode(name: str) -> bytes:
    """`name` in modified UTF-7, as `decode` reads it back.

    pymap's encoder (0.36) walks the name one character at a time in Python and writes
    an "&" that follows a non-ASCII run bare (`日&x` as `&ZeU-&x`), which no decoder
    reads back: a folder so named was listed under a name that could not be selected.
    Here a run of printable ASCII costs one `replace`, and any other run goes through
    Python's UTF-7 codec (the control characters it would leave unshifted are never
    part of a name, `decode` refuses them)."""
    if name.isascii() and name.isprintable():  # every character within 0x20-0x7E
        return name.encode("ascii").replace(b"&", b"&-")
    out = bytearray()
    for run in _RUNS.findall(name):
        if "\x20" <= run[0] <= "\x7e":
            out += run.encode("ascii").replace(b"&", b"&-")
        else:
            out += b"&" + run.encode("utf-7")[1:-1].replace(b"/", b",") + b"-"
    return bytes(out)


class EightBitError(ValueError):
    """A mailbox name with a byte over 127: a name is 7-bit modified UTF-7."""


class EightBitName(NotParseable):
    """pymap's parse error for a name `EightBitError` refused, told apart from other
    malformed names so the BAD can say what to send instead."""


def decode(data: bytes) -> str:
    """The name `data` stands for; ValueError when it is not modified UTF-7
    (EightBitError for a byte over 127).

    ASCII bytes outside a shift sequence are taken one character each, as pymap did,
    so names that mail programs send today decode as before. A control character (a
    NUL above all, which no PostgreSQL text holds) is no part of a mailbox name.
    """
    if _EIGHT_BIT.search(data):
        raise EightBitError("an 8-bit byte in a mailbox name")
    parts: list[str] = []
    position = 0
    while True:
        shift = data.find(b"&", position)
        if shift < 0:
            parts.append(data[position:].decode("ascii"))
            name = "".join(parts)
            if _CONTROL.search(name):
                raise ValueError("a control character in a mailbox name")
            return name
        parts.append(data[position:shift].decode("ascii"))
        end = data.find(b"-", shift + 1)
        if end < 0:
            raise ValueError("a shift sequence with no closing '-'")
        run = data[shift + 1 : end]
        if not run:
            parts.append("&")
        else:
            parts.append(_decode_run(run))
        position = end + 1


def _decode_run(run: bytes) -> str:
    if not _BASE64.fullmatch(run):
        raise ValueError("not modified base64")
    try:
        utf16 = binascii.a2b_base64(run.replace(b",", b"/") + b"=" * (-len(run) % 4))
    except binascii.Error:
        raise ValueError("not modified base64") from None
    if len(utf16) % 2:
        raise ValueError("not UTF-16")
    return utf16.decode("utf-16-be")  # UnicodeDecodeError (a ValueError) on a lone surrogate


def _pymap_decode(data: bytes) -> str:
    try:
        return decode(bytes(data))
    except EightBitError:
        raise EightBitName(memoryview(bytes(data))) from None
    except ValueError:
        raise NotParseable(memoryview(bytes(data))) from None


def install() -> None:
    """Make pymap's mailbox-name and LIST-pattern parsers use `decode`, and its
    responses (a mailbox name in STATUS, the delimiter) use `encode`."""
    # The same call as pymap's (its parameter has another name).
    _mailbox.modutf7_encode = encode  # type: ignore[attr-defined,assignment]
    _response_specials.modutf7_encode = encode  # type: ignore[attr-defined,assignment]
    _mailbox.modutf7_decode = _pymap_decode  # type: ignore[attr-defined]
    _auth_commands.modutf7_decode = _pymap_decode  # type: ignore[attr-defined]
