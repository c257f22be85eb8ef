"""Mailbox export in mboxrd: each message behind a `From ` line, body `From ` lines quoted.

mboxrd (rather than mboxo) quotes lines that already start with `>From ` too,
so a reader that strips one `>` gets every message back byte for byte. Line
ends become LF, as mbox files on Unix have them; a message's CRLFs are restored
by any reader that speaks SMTP again.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

_FROM_LINE = re.compile(rb"^(>*From )", re.MULTILINE)
_UNQUOTE = re.compile(rb"^>(>*From )", re.MULTILINE)
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class MboxEntry:
    envelope_from: str
    received_at: dt.datetime
    raw: bytes = field(repr=False)


def from_line(envelope_from: str, received_at: dt.datetime) -> bytes:
    """`From sender asctime-date`: the empty (bounce) sender is MAILER-DAEMON, as is custom."""
    sender = "".join(envelope_from.split()) or "MAILER-DAEMON"
    when = received_at.astimezone(dt.UTC)
    date = (
        f"{_DAYS[when.weekday()]} {_MONTHS[when.month - 1]} {when.day:2d} "
        f"{when.hour:02d}:{when.minute:02d}:{when.second:02d} {when.year}"
    )
    return f"From {sender} {date}\n".encode()


def quote(raw: bytes) -> bytes:
    """LF line ends, one more `>` before every `>*From ` line, ending in a newline."""
    body = raw.replace(b"\r\n", b"\n")
    body = _FROM_LINE.sub(rb">\1", body)
    return body if body.endswith(b"\n") else body + b"\n"


def unquote(text: bytes) -> bytes:
    """The inverse of `quote` for one message (tests and importers use it)."""
    return _UNQUOTE.sub(rb"\1", text)


def write_mbox(entries: Iterable[MboxEntry], out: BinaryIO) -> int:
    """Write the entries to `out`; the number written."""
    count = 0
    for entry in entries:
        out.write(from_line(entry.envelope_from, entry.received_at))
        out.write(quote(entry.raw))
        out.write(b"\n")
        count += 1
    return count
