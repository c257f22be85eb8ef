"""A stored message parsed into pymap's `MessageContent`, each part where RFC 2046 puts it.

pymap's own parse, which FETCH BODY[n], BODY[n.MIME] and BODYSTRUCTURE read, gave
each part of a multipart the line end before the next boundary (RFC 2046 §5.1.1: it
belongs to the boundary), gave a multipart without parts none (RFC 3501's body-type-mpart
needs one; the answer was unparseable), and gave a part whose header or body held no
line the whole message less its last byte instead.

Here every entity is a byte range of the stored message: its header runs to and with
its first blank line (all of it when there is none, as Dovecot reads it), its body is
the rest. A multipart without a part (no boundary, or no line that is one) holds one
empty text/plain part, as Dovecot shows it. A part without a Content-Type is
text/plain, but in a multipart/digest it is message/rfc822 (RFC 2046 §5.1.5), taken
apart as one: pymap's parse made it text/plain, so a client saw a digest's messages
as text and BODY[n.1], BODY[n.HEADER] served the wrong bytes or none.

Entities nested deeper than `MAX_DEPTH` are not taken apart: each is one opaque
application/octet-stream part, so no parse of it and no recursion over the tree
(pymap's BODYSTRUCTURE, ours, its writing) comes near Python's recursion limit.
APPEND and SMTP take no message that deep (`[smtp] max_mime_depth`); one stored before
they refused it is still served, whole as BODY[], its deep parts as bytes.

`part` finds the entity a section number names (RFC 3501 §6.4.5): inside a
message/rfc822 part the numbers go on in the message it holds, so N.1 is the first
part of that message's multipart, or its body when it has no parts. pymap took the
message itself for N.1, and so served every part of an attached multipart message
one number too deep.

The address fields (From, To, Cc, ...) one message's ENVELOPE and BODYSTRUCTURE parse
are bounded, all its parts together (`MAX_ADDRESS_BYTES`): Python's address parser
takes about a millisecond an address, pymap runs it on the event loop, and a message
from anywhere may carry thousands of addresses in itself and in each message attached
to it. Past the bound a field shows its first addresses only.
"""

from __future__ import annotations

from collections.abc import Sequence
from email.headerregistry import BaseHeader, ContentTypeHeader
from email.policy import SMTP
from typing import cast

from pymap.mime import MessageBody, MessageContent, MessageHeader
from pymap.mime.parsed import ParsedHeaders

# (start, end without the line end, start of the next line), as pymap counts lines.
_Line = tuple[int, int, int]
_DEFAULT_TYPE = cast(ContentTypeHeader, SMTP.header_fetch_parse("Content-Type", "text/plain"))
# RFC 2046 §5.1.5: in a multipart/digest, a part without a Content-Type is a message.
_DIGEST_DEFAULT_TYPE = cast(
    ContentTypeHeader, SMTP.header_fetch_parse("Content-Type", "message/rfc822")
)
_OPAQUE_TYPE = cast(
    ContentTypeHeader, SMTP.header_fetch_parse("Content-Type", "application/octet-stream")
)
# Levels of multipart and message/rfc822 taken apart; the default `[smtp] max_mime_depth`
# is 32. Each level costs a few stack frames in each walk over the tree.
MAX_DEPTH = 64
# The bytes of address fields that the ENVELOPE and BODYSTRUCTURE of one message may
# parse, all its parts together (about a thousand addresses): Python's address parser
# takes about a millisecond an address, and pymap runs it on the event loop.
MAX_ADDRESS_BYTES = 16 * 1024
_ADDRESS_FIELDS = frozenset({b"from", b"sender", b"reply-to", b"to", b"cc", b"bcc"})


def parse(raw: bytes) -> MessageContent:
    """The whole message, its parts nested as pymap serves them."""
    return _entity(raw, memoryview(raw), 0, len(raw), 0, [MAX_ADDRESS_BYTES])


class _BoundedHeaders(ParsedHeaders):
    """pymap's parsed header fields, with the address fields of one message parsed
    within a budget shared by all its parts (`MAX_ADDRESS_BYTES`): a field past it is
    cut after its last whole address that fits, and one with none left is missing."""

    __slots__ = ["_budget"]

    def __init__(self, headers: ParsedHeaders, budget: list[int]) -> None:
        super().__init__(headers._headers)
        self._budget = budget

    def __getitem__(self, name: bytes) -> Sequence[BaseHeader]:
        name_lower = name.lower()
        if name_lower in _ADDRESS_FIELDS and name_lower not in self._parsed:
            kept = _within(self._headers[name_lower], self._budget)
            if not kept:
                raise KeyError(name)
            self._parsed[name_lower] = list(self._parse(kept))
        return super().__getitem__(name)


def _within(values: Sequence[Sequence[bytes]], budget: list[int]) -> list[list[bytes]]:
    """The field's values (each a list of folded lines) as far as `budget` goes, cut at
    the last comma that fits; `budget` is spent."""
    kept: list[list[bytes]] = []
    for value in values:
        lines: list[bytes] = []
        for line in value:
            if len(line) > budget[0]:
                cut = line[: budget[0]].rfind(b",")
                if cut > 0 and (lines or b":" in line[:cut]):  # not in the field's name
                    lines.append(line[:cut])
                budget[0] = 0
                break
            budget[0] -= len(line)
            lines.append(line)
        if lines:
            kept.append(lines)
        if budget[0] == 0:
            break
    return kept


def part(content: MessageContent, section: Sequence[int]) -> MessageContent:
    """The entity `section` names in `content`, as Dovecot finds it: part 1 of an
    entity that is not a multipart is the entity itself, and a number after that of a
    message/rfc822 part counts in the message it holds. IndexError for none."""
    entity = content
    for depth, number in enumerate(section):
        if depth and holds_message(entity):
            entity = entity.body.nested[0]
        if entity.body.content_type.maintype == "multipart":
            if not 0 < number <= len(entity.body.nested):
                raise IndexError(number)
            entity = entity.body.nested[number - 1]
        elif number != 1:
            raise IndexError(number)
    return entity


def holds_message(entity: MessageContent) -> bool:
    """Whether `entity` is a message/rfc822 part taken apart (not one past MAX_DEPTH)."""
    content_type = entity.body.content_type
    return (content_type.maintype, content_type.subtype) == ("message", "rfc822")


def _lines(data: bytes, start: int, end: int) -> list[_Line]:
    out: list[_Line] = []
    while start < end:
        found = data.find(b"\n", start, end)
        if found < 0:
            out.append((start, end, end))
            break
        stop = found - 1 if found > start and data[found - 1] == 0x0D else found
        out.append((start, stop, found + 1))
        start = found + 1
    return out


def _entity(
    data: bytes,
    view: memoryview,
    start: int,
    end: int,
    depth: int,
    budget: list[int],
    default_type: ContentTypeHeader = _DEFAULT_TYPE,
) -> MessageContent:
    lines = _lines(data, start, end)
    # pymap's blank line, as `backend._PYMAP_HEADER_END` finds it: white space only.
    split = next((i + 1 for i, (s, e, _) in enumerate(lines) if not data[s:e].strip()), None)
    if split is None:  # all header; pymap's fold finder skips a header's last line
        header_lines, body_lines = [*lines, (end, end, end)], []
    else:
        header_lines, body_lines = lines[:split], lines[split:]
    body_start = header_lines[-1][2] if header_lines else start
    header = MessageHeader._parse(data, view, header_lines)
    header._raw = view[start:body_start]
    header.parsed = _BoundedHeaders(header.parsed, budget)  # type: ignore[misc]
    content_type = header.parsed.content_type or default_type
    nested: list[MessageContent] = []
    is_message = (content_type.maintype, content_type.subtype) == ("message", "rfc822")
    if depth >= MAX_DEPTH and (content_type.maintype == "multipart" or is_message):
        content_type = _OPAQUE_TYPE
    elif content_type.maintype == "multipart":
        boundary = MessageBody._get_boundary(content_type)
        ranges = _part_ranges(data, body_lines, boundary, end) if boundary else []
        inner = _DIGEST_DEFAULT_TYPE if content_type.subtype == "digest" else _DEFAULT_TYPE
        nested = [_entity(data, view, s, e, depth + 1, budget, inner) for s, e in ranges]
        nested = nested or [_empty(data, view, end)]
    elif is_message:
        nested = [_entity(data, view, body_start, end, depth + 1, budget)]
    body = MessageBody(data, body_lines, content_type, nested)
    body._raw = view[body_start:end]
    content = MessageContent(data, header, body)
    content._raw = view[start:end]
    return content


def _empty(data: bytes, view: memoryview, at: int) -> MessageContent:
    """The one empty text/plain part of a multipart that has none."""
    header = MessageHeader(data, [], [])
    header._raw = view[at:at]
    body = MessageBody(data, [], _DEFAULT_TYPE, [])
    body._raw = view[at:at]
    content = MessageContent(data, header, body)
    content._raw = view[at:at]
    return content


def _part_ranges(
    data: bytes, lines: list[_Line], boundary: bytes, end: int
) -> list[tuple[int, int]]:
    """Where each part of a multipart body starts and ends: from after a delimiter
    line to before the line end that precedes the next; the last part of a body cut
    short (no close delimiter) runs to its end. Preamble and epilogue are in none."""
    delimiter = b"--" + boundary
    ranges: list[tuple[int, int]] = []
    part_start: int | None = None
    for line_start, line_end, next_start in lines:
        if not data.startswith(delimiter, line_start, line_end):
            continue
        text = data[line_start:line_end].rstrip(b" \t")
        if text not in (delimiter, delimiter + b"--"):
            continue
        if part_start is not None:
            before = line_start
            if before > part_start and data[before - 1] == 0x0A:
                before -= 1
                if before > part_start and data[before - 1] == 0x0D:
                    before -= 1
            ranges.append((part_start, before))
        if text != delimiter:
            return ranges
        part_start = next_start
    if part_start is not None:
        ranges.append((part_start, end))
    return ranges
