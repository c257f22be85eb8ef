"""Read and edit a message's header block as bytes: the one header/body split of the gateway.

Every part of the pipeline that asks "where do the headers end?" asks here, so
the encryption decision, the control headers, the outer headers of an encrypted
copy and the MIME structure check all see the same header fields. The rule is
the one Python's MIME parser and Postfix's cleanup follow: the header section
ends at the first empty line (CRLF or bare LF), and a line that is neither a
header field (`name:`) nor the continuation of one starts the body. A bare CR
is not a line break (as in Postfix); a whitespace-only line continues the field
before it. Nothing is ever guessed: what is not a header field is body.

Unencrypted mail must leave byte for byte as it came (DKIM signatures cover the
body and chosen headers), so control headers are removed by cutting their lines
out of the raw header block rather than by re-serialising a parsed message. An
encrypted copy's clear headers, on the other hand, are rebuilt from the parsed
fields (`RawHeader.canonical`), never copied as raw lines: a raw line could
carry a bare CR or a whitespace-only continuation that another reader takes for
the end of the headers.
"""

from __future__ import annotations

import email.header
import functools
import re
from collections.abc import Callable, Iterator
from email.header import decode_header
from typing import NamedTuple

from gateway.charsets import decode_text

# RFC 5322 §2.2: a field name is printable US-ASCII except the colon, then the colon.
_FIELD_START = re.compile(rb"[\x21-\x39\x3b-\x7e]+:")
# RFC 5322 §4.5 (obsolete syntax): white space may stand before the colon. Python's MIME
# parser, and so `split_message`, ends the header section at such a line; Postfix's
# cleanup and other lenient readers take it as a field (see `lenient_headers`).
_OBS_FIELD_START = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:")
_FOLD = re.compile(rb"\r?\n(?=[ \t])")
# A line ends at LF only (a bare CR is part of it); a line that starts with a space or
# a tab continues the field before it.
_LINE = rb"[^\n]*(?:\n|\Z)"
_CONTINUED = rb"(?:[ \t]" + _LINE + rb")*"
# One field of a header block: its first line, whatever it is, and its continuations.
_FIELD = re.compile(_LINE + _CONTINUED)
# The header section `split_message` takes: fields that start with `name:`, up to the
# first line that is neither such a field nor a continuation (the empty line, or body).
_HEADER_SECTION = re.compile(rb"(?:[\x21-\x39\x3b-\x7e]+:" + _LINE + _CONTINUED + rb")*")
# Everything but HT and the printable range (8-bit bytes of UTF-8 headers are kept).
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_WSP_RUN = re.compile(rb"([ \t]+)")
# The pattern decode_header splits a value by (typeshed does not list it).
_ENCODED_WORD: re.Pattern[str] = email.header.ecre  # type: ignore[attr-defined]
# Private-use characters, one of which stands for a backslash while `decode_words` runs.
_STAND_INS = range(0xF0000, 0xFFFFE)
FOLD_AT = 78  # RFC 5322 §2.1.1: lines SHOULD be no longer than 78 characters


class RawHeader(NamedTuple):
    """One header field. A named tuple, not a dataclass: a message's fields are made
    several times per message on the hot path, and a frozen dataclass costs three
    times as much to make."""

    name: str
    raw: bytes  # the whole field, folded lines and final line ending included

    @property
    def value(self) -> str:
        """Unfolded, with RFC 2047 encoded words decoded."""
        text = self.raw.decode("utf-8", "surrogateescape")
        value = text.split(":", 1)[1] if ":" in text else ""
        return decode_words(value.replace("\r\n", "").replace("\n", "").strip())

    @property
    def clean_value(self) -> bytes:
        """The value unfolded, each control character (bare CR included) a space, trimmed."""
        value = self.raw.split(b":", 1)[1]
        value = _FOLD.sub(b"", value)
        return _CONTROL.sub(b" ", value).strip(b" \t")

    def canonical(self) -> bytes:
        """The field rebuilt from its name and value: CRLF line ends, folded at whitespace,
        no bare CR, no whitespace-only line. Encoded words stay as they were."""
        return fold(self.name.encode("ascii"), self.clean_value)


def decode_words(value: str) -> str:
    """`value` with its RFC 2047 encoded words decoded and the rest kept as it is (raw
    UTF-8 text beside encoded words included, which `make_header` refuses)."""
    if "=?" not in value:
        return value
    # decode_header hands the text between encoded words back as raw-unicode-escape
    # bytes, a codec that escapes no backslash: a literal "\u12" there would not decode,
    # and "\u202e" would come back as a right-to-left override. The backslashes outside
    # encoded words travel as a character the value does not hold, and come back as
    # backslashes.
    stand_in = next((c for c in map(chr, _STAND_INS) if c not in value), None)
    if stand_in is None:
        return value
    marked: list[str] = []
    end = 0
    for word in _ENCODED_WORD.finditer(value):
        marked += (value[end : word.start()].replace("\\", stand_in), word.group())
        end = word.end()
    marked.append(value[end:].replace("\\", stand_in))
    try:
        chunks = decode_header("".join(marked))
    except (ValueError, LookupError):
        return value
    text: list[str] = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            text.append(chunk)
        elif charset is None or charset == "unknown-8bit":
            text.append(chunk.decode("raw-unicode-escape"))  # how decode_header encoded it
        else:
            text.append(decode_text(chunk, charset))
    return "".join(text).replace(stand_in, "\\")


def fold(name: bytes, value: bytes) -> bytes:
    """`name: value` folded before whitespace, so no line but an unbreakable word's passes 78."""
    pieces = _WSP_RUN.split(value)  # word, space, word, space, ... word
    line = name + b":"
    lines: list[bytes] = []
    space = b" "
    for index, piece in enumerate(pieces):
        if index % 2:
            space = piece
            continue
        if not piece:
            continue
        if len(line) + len(space) + len(piece) > FOLD_AT and len(line) > len(name) + 1:
            lines.append(line)
            line = b""
        line += space + piece
    lines.append(line)
    return b"\r\n".join(lines) + b"\r\n"


def is_field_start(line: bytes) -> bool:
    """Whether `line` opens a header field (`name:`; no space before the colon)."""
    return _FIELD_START.match(line) is not None


def split_message(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """(header block, separator, body).

    The separator is the empty line ending the headers (b"\\r\\n" or b"\\n"), or
    b"" when the body starts at a line that is not a header field, or when there
    is no body. Linear in the length of the header section.
    """
    end, start = header_bounds(raw)
    return raw[:end], raw[end:start], raw[start:]


def header_block(raw: bytes) -> bytes:
    """The header block of `split_message`, without copying the body (a message may be
    tens of MiB, and most readers want the headers only)."""
    return raw[: header_bounds(raw)[0]]


def header_bounds(raw: bytes) -> tuple[int, int]:
    """(end of the header block, start of the body) of `split_message`, as offsets into
    `raw`: for a reader that wants both without copying the body."""
    section = _HEADER_SECTION.match(raw)
    end = section.end() if section is not None else 0  # it always matches, if only b""
    if raw.startswith(b"\r\n", end):
        return end, end + 2
    if raw.startswith(b"\n", end):
        return end, end + 1
    return end, end


def iter_headers(header_block: bytes) -> Iterator[RawHeader]:
    """The fields of a header block as `split_message` returns it."""
    if len(header_block) <= _CACHED_BLOCK:
        return iter(_cached_fields(header_block))
    return iter(_fields(header_block))


# The pipeline's steps each read the same header block (about ten times per message);
# blocks up to this size are split once and kept for the next reader. Keyed by the
# bytes themselves, so an edited block is a new entry, and bounded in number and size.
# The pipeline empties it when a message is through (`forget_cached`): a clear header
# block of mail to be encrypted is kept no longer than the message is worked on.
_CACHED_BLOCK = 16 * 1024


def _fields(header_block: bytes) -> tuple[RawHeader, ...]:
    return tuple(
        RawHeader(raw.partition(b":")[0].decode("ascii", "replace").strip(), raw)
        for raw in _FIELD.findall(header_block)
        if raw  # the empty match at the end
    )


_cached_fields = functools.lru_cache(maxsize=64)(_fields)


def forget_cached() -> None:
    """Drop every header block `iter_headers` kept."""
    _cached_fields.cache_clear()


def cached_blocks() -> int:
    """How many header blocks `iter_headers` keeps now (for tests)."""
    return _cached_fields.cache_info().currsize


def headers(raw: bytes) -> list[RawHeader]:
    return list(iter_headers(header_block(raw)))


def lenient_headers(raw: bytes) -> list[RawHeader]:
    """The fields a lenient reader takes as the header section: `headers(raw)` and, when
    that section ended at an obsolete-syntax field (`From : x`) rather than an empty
    line, the fields from there on.

    The pipeline reads a message as Python's MIME parser does, but the next MTA may
    read it as Postfix does; a check of who the message claims to be from must see
    every field either of them would take, or a field hidden from our split could
    name a sender the next reader believes.
    """
    end, start = header_bounds(raw)
    fields = list(iter_headers(raw[:end]))
    if start != end or not _OBS_FIELD_START.match(raw, start):
        return fields  # an empty line ended the headers, or no obsolete field follows
    pos, size, in_field = start, len(raw), False
    while pos < size:
        newline = raw.find(b"\n", pos)
        end_of_line = size if newline == -1 else newline + 1
        line = raw[pos:end_of_line]
        if (in_field and line[:1] in (b" ", b"\t")) or _OBS_FIELD_START.match(line):
            in_field = True
            pos = end_of_line
            continue
        break
    return fields + list(iter_headers(raw[start:pos]))


def lines_past_header_end(raw: bytes) -> Iterator[tuple[int, bytes]]:
    """When no empty line ends the header section (it ended at a line that is no field,
    which `split_message` and Python's parser take for the body's first), each line
    from there up to the first blank line, with its line number (from 1, in `raw`).

    Mail programs and IMAP servers often read up to that blank line as header: a field
    there is one some readers see and the pipeline would not. Nothing for a message
    whose header ends as it should; linear in what it reads.
    """
    end, start = header_bounds(raw)
    if start != end or end >= len(raw):
        return
    number = raw.count(b"\n", 0, end) + 1
    pos, size = end, len(raw)
    while pos < size:
        newline = raw.find(b"\n", pos)
        stop = size if newline == -1 else newline + 1
        line = raw[pos:stop].rstrip(b"\r\n")
        if not line.strip(b" \t\r"):
            return
        yield number, line
        number, pos = number + 1, stop


def get(raw: bytes, name: str) -> str | None:
    """The first header called `name` (case-insensitive), decoded; None when absent."""
    lowered = name.lower()
    for field in iter_headers(header_block(raw)):
        if field.name.lower() == lowered:
            return field.value
    return None


def edit(
    raw: bytes,
    *,
    drop: Callable[[str], bool] = lambda _name: False,
    replace: dict[str, bytes] | None = None,
) -> bytes:
    """Drop fields whose name matches `drop`; swap whole fields named in `replace`.

    `replace` maps a lower-cased name to the new complete field (with line ending).
    Nothing else changes, byte for byte.
    """
    replace = replace or {}
    end, start = header_bounds(raw)
    kept: list[bytes] = []
    changed = False
    for field in iter_headers(raw[:end]):
        key = field.name.lower()
        if drop(field.name):
            changed = True
            continue
        if key in replace:
            kept.append(replace[key])
            changed = True
            continue
        kept.append(field.raw)
    if not changed:
        return raw
    # One copy of the body, straight into the new message.
    return b"".join([*kept, raw[end:start], memoryview(raw)[start:]])
