"""The form of a message a relay can take: 7-bit MIME, or valid 8bit data.

RFC 6152 3: a message with 8-bit data goes to a peer that does not offer
8BITMIME only converted, or it is returned. And 8BITMIME does not mean "any
bytes": RFC 6152 2 and RFC 2045 2.8 say 8bit data is still lines of at most
998 octets, with no NUL, CR and LF only together as a line end. So `fits`
asks whether a message already is what the peer announced, and `convert`
makes it so. Like Postfix we convert rather than return: each leaf part whose
body is not valid data for the peer and has an identity encoding (absent,
7bit, 8bit, binary) gets quoted-printable (text) or base64 (anything else) and
a Content-Transfer-Encoding saying so; multiparts and message/rfc822 are
walked into, so the result is still valid MIME with the same decoded content,
and parts that were valid already are left as they are. A part declared
quoted-printable or base64 that holds invalid bytes anyway is decoded
leniently and encoded again.

Line ends are what SMTP makes of them: DATA has no other line end than CRLF,
so a bare CR or LF is a line end on the wire (gateway.relay.wire_form), and
here too. A text part's line ends are CRLF in its canonical form anyway
(RFC 2046 4.1.1); a non-text part with an identity encoding had no other
way to travel. But not in the message's header section: the gateway reads a
bare CR there as part of its line (gateway.rawheaders, as Postfix does), and
checks the fields so (check-header-sender among others). Sent as a line end,
"X-Note: x<CR>From: ceo@bank.example" would put a From field on the wire
that no check saw; so there a bare CR is a space, as rawheaders reads it.

Header fields, the message's and its parts', are where Postfix stops: it sends
8-bit header bytes as they are (unless the message needs SMTPUTF8, which it
returns with 5.6.7). Here nothing 8-bit reaches a 7-bit server: a field with
8-bit bytes is written again with RFC 2047 encoded words (RFC 2231 for MIME
parameters), in utf-8 when its bytes are UTF-8, else in RFC 1428's
unknown-8bit, so no byte is lost. No header field holds a NUL (RFC 5322 2.2):
it becomes a space. A line over 998 octets is folded at its white space, or
written in encoded words where it has none. What cannot be said in 7 bits (an
address or a message id with 8-bit bytes, a part in an encoding we cannot
decode) raises `Unconvertible`: the relay returns the message rather than
mangle it.
"""

from __future__ import annotations

import base64
import binascii
import re
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32

from gateway import mimepolicy
from gateway.mail.header_line_ends import header_section_end

# Nesting deeper than this is encoded whole, as one opaque leaf.
MAX_DEPTH = 32

# RFC 5321 4.5.3.1.6 / RFC 2045 2.8: at most 998 octets between two line ends.
MAX_LINE = 998

_LINE_ENDS = re.compile(rb"\r\n|\n|\r(?!\n)")
_CTE_FIELD = re.compile(rb"(?im)^content-transfer-encoding[ \t]*:.*\n(?:[ \t].*\n)*")
_NOT_ASCII = re.compile(rb"[\x00\x80-\xff]")
_BARE_CR = re.compile(rb"\r(?!\n)")
_FIELD_START = re.compile(rb"(?m)^(?![ \t])")
_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")
# A line of encoded text that starts with "--": its first dash is written =2D.
_DASHES = re.compile(rb"(?m)^-(?=-)")
_IDENTITY = ("7bit", "8bit", "binary")

# RFC 3463: X.6.3 conversion required but not supported; X.6.7 non-ASCII address.
CONVERSION_NOT_SUPPORTED = "5.6.3"
NON_ASCII_ADDRESS = "5.6.7"


class Unconvertible(ValueError):
    """The message cannot be made valid for the relay without changing what it says."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def is_7bit(raw: bytes) -> bool:
    """Whether `raw` holds only 7-bit bytes: no byte above 127, no NUL."""
    return _NOT_ASCII.search(raw) is None


def fits(raw: bytes, *, eightbit: bool) -> bool:
    """Whether `raw`, as DATA sends it, is valid for a relay with (or without) 8BITMIME:
    no NUL, no line over 998 octets, and no byte above 127 unless `eightbit`.

    A bare CR or LF counts as the line end DATA makes of it, but a bare CR in the
    header section does not fit: it is no line end there (see the module docstring).
    """
    if b"\x00" in raw or _has_long_line(raw):
        return False
    if b"\r" in raw and _BARE_CR.search(raw[: header_section_end(raw)]):
        return False
    return eightbit or is_7bit(raw)


def convert(raw: bytes, *, eightbit: bool) -> bytes:
    """`raw` made valid for a relay with (or without) 8BITMIME, in CRLF line ends.

    Parts and header fields that are valid already stay as they are. Raises
    Unconvertible when the conversion cannot be done faithfully.
    """
    end = header_section_end(raw)
    text = _LINE_ENDS.sub(b"\n", _BARE_CR.sub(b" ", raw[:end]) + raw[end:])
    return _Converter(eightbit).entity(text, 0, top=True).replace(b"\n", b"\r\n")


def downgrade(raw: bytes) -> bytes:
    """`raw` with every 8-bit header field and part in 7 bits, CRLF line ends.

    Raises Unconvertible when that cannot be done faithfully.
    """
    return convert(raw, eightbit=False)


def _has_long_line(data: bytes) -> bool:
    """Whether a line of `data` (ended by CRLF, a bare CR or a bare LF) is over 998 octets.

    Split in C: a regular expression for "999 octets, none a line end" starts again at
    every octet, seconds for a large attachment of lines just below the limit.
    """
    return max(map(len, data.splitlines()), default=0) > MAX_LINE


def _split(entity: bytes) -> tuple[bytes, bytes]:
    if entity.startswith(b"\n"):
        return b"", entity[1:]
    head, sep, body = entity.partition(b"\n\n")
    return (head + b"\n", body) if sep else (entity, b"")


class _Converter:
    """One conversion: the target (7-bit, or 8bit data) and the words for refusing it."""

    def __init__(self, eightbit: bool) -> None:
        self.eightbit = eightbit
        self.target = (
            "the relay takes only 8bit data (no NUL, lines of at most 998 octets)"
            if eightbit
            else "the relay does not accept 8-bit data (no 8BITMIME)"
        )

    def fits(self, data: bytes) -> bool:
        return fits(data, eightbit=self.eightbit)

    def entity(self, entity: bytes, depth: int, *, top: bool = False) -> bytes:
        head, body = _split(entity)
        if not entity.startswith(b"\n") and b"\n\n" not in entity:
            return self.head(entity)  # a header section and no body
        head = self.head(head)
        if self.fits(body):
            return head + b"\n" + body
        fields = _fields(head)
        cte = str(fields.get("Content-Transfer-Encoding", "7bit")).strip().lower()
        if cte not in _IDENTITY:
            return _with_cte(head, cte, top) + b"\n" + self.reencoded(body, cte, fields)
        ctype = fields.get_content_type()
        if depth < MAX_DEPTH and ctype.startswith("multipart/"):
            boundary = fields.get_boundary()
            if boundary:
                inner = self.multipart(body, boundary.encode("ascii", "replace"), depth)
                return self.domain(head, inner, top, "Content-Transfer-Encoding" in fields)
        if depth < MAX_DEPTH and ctype == "message/rfc822":
            return self.domain(head, self.entity(body, depth + 1), top, True)
        if fields.get_content_maintype() == "text":
            return _with_cte(head, "quoted-printable", top) + b"\n" + _qp(body, istext=True)
        lines = base64.encodebytes(body.replace(b"\n", b"\r\n"))
        return _with_cte(head, "base64", top) + b"\n" + lines

    def domain(self, head: bytes, body: bytes, top: bool, declared: bool) -> bytes:
        """A multipart's or message's head and converted body, with the encoding domain
        (RFC 2045 6.4: 7bit or 8bit, never an encoding) that the body now has."""
        domain = "7bit" if is_7bit(body) else "8bit"
        if declared or domain == "8bit":
            head = _with_cte(head, domain, top)
        return head + b"\n" + body

    def multipart(self, body: bytes, boundary: bytes, depth: int) -> bytes:
        delimiter = re.compile(rb"(?m)^--" + re.escape(boundary) + rb"(--)?[ \t]*$")
        marks = list(delimiter.finditer(body))
        if not marks:
            return self.outside(body)
        out = [self.outside(body[: marks[0].start()])]  # the preamble
        for mark, following in zip(marks, [*marks[1:], None], strict=True):
            out.append(mark.group(0))
            end = following.start() if following is not None and not mark.group(1) else len(body)
            segment = body[mark.end() : end]
            if mark.group(1):
                out.append(self.outside(segment))  # the epilogue
                break
            if segment.startswith(b"\n") and len(segment) > 1:
                tail = b"\n" if following is not None and segment.endswith(b"\n") else b""
                inner = segment[1 : len(segment) - len(tail)]
                segment = b"\n" + self.entity(inner, depth + 1) + tail
            out.append(segment)
        return b"".join(out)

    def outside(self, text: bytes) -> bytes:
        """A multipart's preamble or epilogue, valid for the relay and nothing lost.

        RFC 2046 5.1.1 has MIME readers ignore both; only a reader without MIME shows
        them (the "This is a multi-part message in MIME format." line). Postfix and
        sendmail convert body parts only and pass these through, 8-bit bytes and all;
        that is not 7-bit data. Of what is, dropping the text loses it all, and a "?"
        for each 8-bit byte (what this did once) loses those bytes for good, and can
        even make a delimiter line ("?" is a boundary character: "--b\\xe9" became
        "--b?"). Quoted-printable loses nothing: the ASCII reads as before, every other
        byte (a NUL among them) is an =XX that decodes back, and long lines get soft
        breaks. No MIME reader decodes it, and none needs to. Text that is valid
        already stays as it is; in the encoded text no line starts with "--" (its
        first dash is =2D), so it cannot make a delimiter.
        """
        return text if self.fits(text) else _qp(text, istext=True)

    def reencoded(self, body: bytes, cte: str, fields: Message) -> bytes:
        """A body declared quoted-printable or base64 that holds invalid bytes anyway
        (8-bit bytes, a NUL, an overlong line), decoded as a lenient reader does
        (8-bit bytes kept in quoted-printable, bytes outside the alphabet skipped in
        base64, RFC 2045 6.8) and encoded again."""
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
            f"a part in Content-Transfer-Encoding {_printable(cte)} holds data that would"
            f" need converting, and {self.target}",
        )

    def head(self, head: bytes) -> bytes:
        """The header section with each field that is not valid for the relay written again."""
        if self.fits(head):
            return head
        fields = [f for f in _FIELD_START.split(head) if f]
        return b"".join(f if self.fits(f) else self.field(f) for f in fields)

    def field(self, field: bytes) -> bytes:
        """One header field made valid: encoded words for 8-bit bytes toward a 7-bit
        relay; else each NUL a space and long lines folded at white space, or (where a
        line has none to fold at) encoded words."""
        if not self.eightbit and not is_7bit(field):
            return self.encoded(field)
        field = field.replace(b"\x00", b" ")
        if not _has_long_line(field):
            return field
        folded = _folded(field)
        return folded if folded is not None else self.encoded(field)

    def encoded(self, field: bytes) -> bytes:
        name, colon, value = field.partition(b":")
        if not colon or not _FIELD_NAME.fullmatch(name):
            raise Unconvertible(
                CONVERSION_NOT_SUPPORTED,
                "a header line that is not a header field would need converting,"
                f" and {self.target}",
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
                " supports neither SMTPUTF8 nor 8BITMIME"
                if not self.eightbit
                else f"the {label} header field holds an address with 8-bit bytes in a line"
                " too long to fold",
            )
        written = folded.encode("utf-8", "surrogateescape")
        if not folded or not is_7bit(written) or _has_long_line(written):
            raise Unconvertible(
                CONVERSION_NOT_SUPPORTED,
                f"the {label} header field holds bytes or a line that encoded words cannot"
                f" carry, and {self.target}",
            )
        return written


def _folded(field: bytes) -> bytes | None:
    """`field` with each line over 998 octets folded before white space it has, or None.

    Folding (RFC 5322 2.2.3) changes nothing: unfolding takes out only the line end.
    No line of white space alone is made (RFC 5322 3.2.2 forbids it): white space at
    the end of a long line is dropped first.
    """
    out = []
    for line in field.split(b"\n"):
        if len(line) > MAX_LINE:
            line = line.rstrip(b" \t")
        while len(line) > MAX_LINE:
            cut = max(line.rfind(b" ", 1, MAX_LINE + 1), line.rfind(b"\t", 1, MAX_LINE + 1))
            if cut <= 0 or not line[:cut].strip(b" \t"):
                return None
            out.append(line[:cut])
            line = line[cut:]
        out.append(line)
    return b"\n".join(out)


def _qp(data: bytes, *, istext: bool) -> bytes:
    """`data` in quoted-printable, no line of it starting with "--" (see `outside`)."""
    encoded = binascii.b2a_qp(data, quotetabs=False, istext=istext, header=False)
    return _DASHES.sub(b"=2D", encoded)


def _printable(text: str) -> str:
    return re.sub(r"[^\x21-\x7e]", "?", text)[:40]


def _fields(head: bytes) -> Message:
    return BytesHeaderParser(policy=compat32).parsebytes(head + b"\n")


def _with_cte(head: bytes, cte: str, top: bool) -> bytes:
    head = _CTE_FIELD.sub(b"", head)
    if top and b"mime-version:" not in head.lower():
        head += b"MIME-Version: 1.0\n"
    return head + f"Content-Transfer-Encoding: {cte}\n".encode("ascii")
