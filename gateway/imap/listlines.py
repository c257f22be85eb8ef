"""LIST and LSUB answers written straight as bytes, byte for byte what pymap writes.

pymap builds each LIST entry as a `ListResponse`, formatted at write time through
`BytesFormat.join` (a runtime `Protocol` check per piece), a `Mailbox`, an
`AString`, a `QuotedString` and a modified UTF-7 encoder that walks the name one
character at a time in Python. At the folder limit (`folders.MAX_FOLDERS`, names up
to 200 characters) that was about a tenth of a second of event-loop time per LIST,
every listener of serve waiting, and more on a loaded machine. Here each line is
put together from bytes operations: a name all printable ASCII (nearly every one)
costs one `replace`, other names go by runs, not by characters. The output is
pymap's, quirks included (an "&" right after a non-ASCII run is written bare, as
pymap writes it), which a golden test checks against pymap over drawn folder sets.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from pymap.bytes import WriteStream
from pymap.parsing.response import UntaggedResponse

# What pymap's `AString` writes as an atom (ATOM-CHAR and "]"), anything else quoted.
_ATOM = re.compile(rb"[\x21\x23\x24\x26\x27\x2B-\x5B\x5D\x5E-\x7A\x7C\x7E]+")
_RUNS = re.compile(r"[\x20-\x7e]+|[^\x20-\x7e]+")


def _shifted(run: str) -> bytes:
    """A run of characters outside printable ASCII in modified base64, as pymap makes
    it: through Python's UTF-7 codec, which writes TAB, CR, LF as they are (and so
    shifts them as an empty run); no folder name holds those."""
    return run.encode("utf-7")[1:-1].replace(b"/", b",")


def encode_name(name: str) -> bytes:
    """`name` in modified UTF-7, exactly as `pymap.parsing.modutf7.modutf7_encode`."""
    if name.isascii() and name.isprintable():  # every character within 0x20-0x7E
        return name.encode("ascii").replace(b"&", b"&-")
    out = bytearray()
    after_shift = False
    for run in _RUNS.findall(name):
        if "\x20" <= run[0] <= "\x7e":
            if after_shift:  # pymap writes the character that ends a shift as it is
                out += run[0].encode("ascii")
                run = run[1:]
            out += run.encode("ascii").replace(b"&", b"&-")
            after_shift = False
        else:
            out += b"&" + _shifted(run) + b"-"
            after_shift = True
    return bytes(out)


def _quoted(raw: bytes) -> bytes:
    return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def mailbox_bytes(name: str) -> bytes:
    """A mailbox name as pymap's `Mailbox` writes it: an atom if it can be, else quoted."""
    if name.upper() == "INBOX":
        return b"INBOX"
    raw = encode_name(name)
    return raw if _ATOM.fullmatch(raw) else _quoted(raw)


def list_line(kind: bytes, name: str, delimiter: str | None, attributes: Sequence[bytes]) -> bytes:
    """One untagged LIST (or LSUB, `kind`) line with its CRLF, as pymap's `ListResponse`."""
    sep = _quoted(encode_name(delimiter)) if delimiter else b"NIL"
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
