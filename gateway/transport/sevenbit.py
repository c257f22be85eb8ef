"""The 7-bit form of an 8-bit message, for a peer that does not offer 8BITMIME.

RFC 6152 3: such a message must be converted or returned. Like Postfix we
convert: each leaf part with 8-bit content and an identity encoding (absent,
7bit, 8bit, binary) gets quoted-printable (text) or base64 (anything else) and
a Content-Transfer-Encoding saying so; multiparts and message/rfc822 are
walked into, so the result is still valid MIME with the same decoded content.
Everything else keeps its bytes. Header fields are not touched: a message whose
header section needs UTF-8 needs SMTPUTF8, which the relay decides before.
"""

from __future__ import annotations

import base64
import binascii
import re
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32

# Nesting deeper than this is encoded whole, as one opaque leaf.
MAX_DEPTH = 32

_LINE_ENDS = re.compile(rb"\r\n|\n|\r(?!\n)")
_CTE_FIELD = re.compile(rb"(?im)^content-transfer-encoding[ \t]*:.*\n(?:[ \t].*\n)*")
_NOT_ASCII = re.compile(rb"[\x80-\xff]")
_IDENTITY = ("7bit", "8bit", "binary")


def needs_8bit(raw: bytes) -> bool:
    """Whether the body holds any byte above 127 (the header section aside)."""
    _head, body = _split(_LINE_ENDS.sub(b"\n", raw))
    return not body.isascii()


def downgrade(raw: bytes) -> bytes:
    """`raw` with every 8-bit body part re-encoded in 7 bits, CRLF line ends."""
    text = _LINE_ENDS.sub(b"\n", raw)
    return _entity(text, 0, top=True).replace(b"\n", b"\r\n")


def _split(entity: bytes) -> tuple[bytes, bytes]:
    if entity.startswith(b"\n"):
        return b"", entity[1:]
    head, sep, body = entity.partition(b"\n\n")
    return (head + b"\n", body) if sep else (entity, b"")


def _entity(entity: bytes, depth: int, *, top: bool = False) -> bytes:
    head, body = _split(entity)
    if body.isascii():
        return entity
    fields = _fields(head)
    cte = str(fields.get("Content-Transfer-Encoding", "7bit")).strip().lower()
    if cte not in _IDENTITY:
        return entity  # declared encoded but is not: nothing sound to do
    ctype = fields.get_content_type()
    if depth < MAX_DEPTH and ctype.startswith("multipart/"):
        boundary = fields.get_boundary()
        if boundary:
            return head + b"\n" + _multipart(body, boundary.encode("ascii", "replace"), depth)
    if depth < MAX_DEPTH and ctype == "message/rfc822":
        return _with_cte(head, "7bit", top) + b"\n" + _entity(body, depth + 1)
    if fields.get_content_maintype() == "text":
        encoded = binascii.b2a_qp(body, quotetabs=False, istext=True, header=False)
        return _with_cte(head, "quoted-printable", top) + b"\n" + encoded
    lines = base64.encodebytes(body.replace(b"\n", b"\r\n"))
    return _with_cte(head, "base64", top) + b"\n" + lines


def _multipart(body: bytes, boundary: bytes, depth: int) -> bytes:
    delimiter = re.compile(rb"(?m)^--" + re.escape(boundary) + rb"(--)?[ \t]*$")
    marks = list(delimiter.finditer(body))
    if not marks:
        return _NOT_ASCII.sub(b"?", body)
    out = [_NOT_ASCII.sub(b"?", body[: marks[0].start()])]  # the preamble: never shown
    for mark, following in zip(marks, [*marks[1:], None], strict=True):
        out.append(mark.group(0))
        end = following.start() if following is not None and not mark.group(1) else len(body)
        segment = body[mark.end() : end]
        if mark.group(1):
            out.append(_NOT_ASCII.sub(b"?", segment))  # the epilogue
            break
        if segment.startswith(b"\n") and len(segment) > 1:
            tail = b"\n" if following is not None and segment.endswith(b"\n") else b""
            inner = segment[1 : len(segment) - len(tail)]
            segment = b"\n" + _entity(inner, depth + 1) + tail
        out.append(segment)
    return b"".join(out)


def _fields(head: bytes) -> Message:
    return BytesHeaderParser(policy=compat32).parsebytes(head + b"\n")


def _with_cte(head: bytes, cte: str, top: bool) -> bytes:
    head = _CTE_FIELD.sub(b"", head)
    if top and b"mime-version:" not in head.lower():
        head += b"MIME-Version: 1.0\n"
    return head + f"Content-Transfer-Encoding: {cte}\n".encode("ascii")
