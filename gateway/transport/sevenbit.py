"""The 7-bit form of an 8-bit message, for a peer that does not offer 8BITMIME.

RFC 6152 3: such a message must be converted or returned. Like Postfix we
convert: each leaf part with 8-bit content and an identity encoding (absent,
7bit, 8bit, binary) gets quoted-printable (text) or base64 (anything else) and
a Content-Transfer-Encoding saying so; multiparts and message/rfc822 are
walked into, so the result is still valid MIME with the same decoded content.
A NUL counts as 8-bit here: RFC 2045 allows it in neither 7bit nor 8bit data.
A part declared quoted-printable or base64 that holds 8-bit bytes anyway is
decoded leniently and encoded again.

Header fields, the message's and its parts', are where Postfix stops: it sends
8-bit header bytes as they are (unless the message needs SMTPUTF8, which it
returns with 5.6.7). Here nothing 8-bit reaches a 7-bit server: a field with
8-bit bytes is written again with RFC 2047 encoded words (RFC 2231 for MIME
parameters), in utf-8 when its bytes are UTF-8, else in RFC 1428's
unknown-8bit, so no byte is lost. What cannot be said in 7 bits (an address
or a message id with 8-bit bytes, a part in an encoding we cannot decode) raises
`Unconvertible`: the relay returns the message rather than mangle it.
"""

from __future__ import annotations

import base64
import binascii
import re
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32

from gateway import mimepolicy

# Nesting deeper than this is encoded whole, as one opaque leaf.
MAX_DEPTH = 32

_LINE_ENDS = re.compile(rb"\r\n|\n|\r(?!\n)")
_CTE_FIELD = re.compile(rb"(?im)^content-transfer-encoding[ \t]*:.*\n(?:[ \t].*\n)*")
_NOT_ASCII = re.compile(rb"[\x00\x80-\xff]")
_FIELD_START = re.compile(rb"(?m)^(?![ \t])")
_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")
# A line of encoded text that starts with "--": its first dash is written =2D.
_DASHES = re.compile(rb"(?m)^-(?=-)")
_IDENTITY = ("7bit", "8bit", "binary")

# RFC 3463: X.6.3 conversion required but not supported; X.6.7 non-ASCII address.
CONVERSION_NOT_SUPPORTED = "5.6.3"
NON_ASCII_ADDRESS = "5.6.7"


class Unconvertible(ValueError):
    """The message cannot be said in 7 bits without changing what it says."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def is_7bit(raw: bytes) -> bool:
    """Whether `raw` already is 7-bit data: no byte above 127, no NUL."""
    return _NOT_ASCII.search(raw) is None


def downgrade(raw: bytes) -> bytes:
    """`raw` with every 8-bit header field and part in 7 bits, CRLF line ends.

    Raises Unconvertible when that cannot be done faithfully.
    """
    text = _LINE_ENDS.sub(b"\n", raw)
    return _entity(text, 0, top=True).replace(b"\n", b"\r\n")


def _split(entity: bytes) -> tuple[bytes, bytes]:
    if entity.startswith(b"\n"):
        return b"", entity[1:]
    head, sep, body = entity.partition(b"\n\n")
    return (head + b"\n", body) if sep else (entity, b"")


def _entity(entity: bytes, depth: int, *, top: bool = False) -> bytes:
    head, body = _split(entity)
    if not entity.startswith(b"\n") and b"\n\n" not in entity:
        return _head(entity)  # a header section and no body
    head = _head(head)
    if is_7bit(body):
        return head + b"\n" + body
    fields = _fields(head)
    cte = str(fields.get("Content-Transfer-Encoding", "7bit")).strip().lower()
    if cte not in _IDENTITY:
        return _with_cte(head, cte, top) + b"\n" + _reencoded(body, cte, fields)
    ctype = fields.get_content_type()
    if depth < MAX_DEPTH and ctype.startswith("multipart/"):
        boundary = fields.get_boundary()
        if boundary:
            return head + b"\n" + _multipart(body, boundary.encode("ascii", "replace"), depth)
    if depth < MAX_DEPTH and ctype == "message/rfc822":
        return _with_cte(head, "7bit", top) + b"\n" + _entity(body, depth + 1)
    if fields.get_content_maintype() == "text":
        return _with_cte(head, "quoted-printable", top) + b"\n" + _qp(body, istext=True)
    lines = base64.encodebytes(body.replace(b"\n", b"\r\n"))
    return _with_cte(head, "base64", top) + b"\n" + lines


def _multipart(body: bytes, boundary: bytes, depth: int) -> bytes:
    delimiter = re.compile(rb"(?m)^--" + re.escape(boundary) + rb"(--)?[ \t]*$")
    marks = list(delimiter.finditer(body))
    if not marks:
        return _outside(body)
    out = [_outside(body[: marks[0].start()])]  # the preamble
    for mark, following in zip(marks, [*marks[1:], None], strict=True):
        out.append(mark.group(0))
        end = following.start() if following is not None and not mark.group(1) else len(body)
        segment = body[mark.end() : end]
        if mark.group(1):
            out.append(_outside(segment))  # the epilogue
            break
        if segment.startswith(b"\n") and len(segment) > 1:
            tail = b"\n" if following is not None and segment.endswith(b"\n") else b""
            inner = segment[1 : len(segment) - len(tail)]
            segment = b"\n" + _entity(inner, depth + 1) + tail
        out.append(segment)
    return b"".join(out)


def _outside(text: bytes) -> bytes:
    """A multipart's preamble or epilogue in 7 bits, nothing lost.

    RFC 2046 5.1.1 has MIME readers ignore both; only a reader without MIME shows
    them (the "This is a multi-part message in MIME format." line). Postfix and
    sendmail convert body parts only and pass these through, 8-bit bytes and all;
    that is not 7-bit data. Of what is, dropping the text loses it all, and a "?"
    for each 8-bit byte (what this did before) loses those bytes for good, and can
    even make a delimiter line ("?" is a boundary character: "--b\\xe9" became
    "--b?"). Quoted-printable loses nothing: the ASCII reads as before, every other
    byte (a NUL among them) is an =XX that decodes back. No MIME reader decodes it,
    and none needs to. Text in 7 bits already stays as it is; in the encoded text no
    line starts with "--" (its first dash is =2D), so it cannot make a delimiter.
    """
    return text if is_7bit(text) else _qp(text, istext=True)


def _qp(data: bytes, *, istext: bool) -> bytes:
    """`data` in quoted-printable, no line of it starting with "--" (see `_outside`)."""
    encoded = binascii.b2a_qp(data, quotetabs=False, istext=istext, header=False)
    return _DASHES.sub(b"=2D", encoded)


def _reencoded(body: bytes, cte: str, fields: Message) -> bytes:
    """A body declared quoted-printable or base64 that holds 8-bit bytes anyway,
    decoded as a lenient reader does (8-bit bytes kept in quoted-printable, bytes
    outside the alphabet skipped in base64, RFC 2045 6.8) and encoded again."""
    if cte == "quoted-printable":
        decoded = binascii.a2b_qp(body)
        return _qp(decoded, istext=fields.get_content_maintype() == "text")
    if cte == "base64":
        letters = re.sub(rb"[^A-Za-z0-9+/]", b"", body.split(b"=", 1)[0])
        letters = letters[: len(letters) - len(letters) % 4 if len(letters) % 4 == 1 else None]
        decoded = binascii.a2b_base64(letters + b"=" * (-len(letters) % 4))
        return base64.encodebytes(decoded)
    raise Unconvertible(
        CONVERSION_NOT_SUPPORTED,
        f"a part in Content-Transfer-Encoding {_printable(cte)} holds 8-bit data,"
        " and the relay does not accept 8-bit data (no 8BITMIME)",
    )


def _head(head: bytes) -> bytes:
    """The header section with each field that holds 8-bit bytes in encoded words."""
    if is_7bit(head):
        return head
    fields = [f for f in _FIELD_START.split(head) if f]
    return b"".join(f if is_7bit(f) else _encoded_field(f) for f in fields)


def _encoded_field(field: bytes) -> bytes:
    name, colon, value = field.partition(b":")
    if not colon or not _FIELD_NAME.fullmatch(name):
        raise Unconvertible(
            CONVERSION_NOT_SUPPORTED, "a header line with 8-bit data is not a header field"
        )
    label = name.decode("ascii")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        text = value.decode("ascii", "surrogateescape")  # written as unknown-8bit
    text = " ".join(text.replace("\x00", " ").split())  # no header holds a NUL (RFC 5322)
    policy = mimepolicy.DEFAULT
    try:
        header = policy.header_factory(label, text)
        folded = policy.fold(label, header)
    except Exception:  # noqa: BLE001  (a hostile value can break the stdlib parser any way)
        folded = ""
    addresses = getattr(header, "addresses", ()) if folded else ()
    if any(not a.addr_spec.isascii() for a in addresses):
        raise Unconvertible(
            NON_ASCII_ADDRESS,
            f"the {label} header field holds an address with 8-bit bytes, and the relay"
            " supports neither SMTPUTF8 nor 8BITMIME",
        )
    if not folded or not is_7bit(folded.encode("utf-8", "surrogateescape")):
        raise Unconvertible(
            CONVERSION_NOT_SUPPORTED,
            f"the {label} header field holds 8-bit bytes that encoded words cannot carry,"
            " and the relay does not accept 8-bit data (no 8BITMIME)",
        )
    return folded.encode("ascii")


def _printable(text: str) -> str:
    return re.sub(r"[^\x21-\x7e]", "?", text)[:40]


def _fields(head: bytes) -> Message:
    return BytesHeaderParser(policy=compat32).parsebytes(head + b"\n")


def _with_cte(head: bytes, cte: str, top: bool) -> bytes:
    head = _CTE_FIELD.sub(b"", head)
    if top and b"mime-version:" not in head.lower():
        head += b"MIME-Version: 1.0\n"
    return head + f"Content-Transfer-Encoding: {cte}\n".encode("ascii")
