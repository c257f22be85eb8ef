"""LIST and LSUB answers written straight as bytes, byte for byte what pymap writes.

pymap builds each LIST entry as a `ListResponse`, formatted at write time through
`BytesFormat.join` (a runtime `Protocol` check per piece), a `Mailbox`, an
`AString`, a `QuotedString` and a modified UTF-7 encoder that walks the name one
character at a time in Python. At the folder limit (`folders.MAX_FOLDERS`, names up
to 200 characters) that was about a tenth of a second of event-loop time per LIST,
every listener of serve waiting, and more on a loaded machine. Here each line is
put together from bytes operations: a name all printable ASCII (nearly every one)
costs one `replace`, other names go by runs, not by characters (`modutf7.encode`).
The output is pymap's, which a golden test checks against pymap over drawn folder
sets, but for one correction: an "&" right after a non-ASCII run is written "&-",
where pymap wrote it bare and the listed name could not be sent back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from pymap.bytes import WriteStream
from pymap.parsing.response import UntaggedResponse

from gateway.imap import modutf7

# What pymap's `AString` writes as an atom (ATOM-CHAR and "]"), anything else quoted.
_ATOM = re.compile(rb"[\x21\x23\x24\x26\x27\x2B-\x5B\x5D\x5E-\x7A\x7C\x7E]+")


def _quoted(raw: bytes) -> bytes:
    return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def mailbox_bytes(name: str) -> bytes:
    """A mailbox name as pymap's `Mailbox` writes it: an atom if it can be, else quoted."""
    if name.upper() == "INBOX":
        return b"INBOX"
    raw = modutf7.encode(name)
    return raw if _ATOM.fullmatch(raw) else _quoted(raw)


def list_line(kind: bytes, name: str, delimiter: str | None, attributes: Sequence[bytes]) -> bytes:
    """One untagged LIST (or LSUB, `kind`) line with its CRLF, as pymap's `ListResponse`."""
    sep = _quoted(modutf7.encode(delimiter)) if delimiter else b"NIL"
    attrs = b" ".join([b"\\" + attribute for attribute in attributes])
    return b"* %b (%b) %b %b\r\n" % (kind, attrs, sep, mailbox_bytes(name))


class ListLines(UntaggedResponse):
    """All the entries of one LIST or LSUB, already written: `write` is one copy."""

    def __init__(
        self, kind: bytes, entries: Iterable[tuple[str, str | None, Sequence[bytes]]]
    ) -> None:
        super().__init__()
        self._lines = b"".join(list_line(kind, *entry) for entry in entries)

    @property
    def text(self) -> bytes:
        # What follows "* " (pymap's logs ask for it; the lines are written whole).
        return self._lines[2:].rstrip(b"\r\n")

    def write(self, writer: WriteStream) -> None:
        if self._lines:
            writer.write(self._lines)

    async def async_write(self, writer: WriteStream) -> None:
        self.write(writer)

    def __bytes__(self) -> bytes:
        return self._lines
