"""RFC 3156 PGP/MIME, built from raw bytes: the inner entity, the armor, the outer message.

The inner entity is the original MIME entity (its Content-* headers and body,
attachments and all) in canonical CRLF form. The outer message carries, in
clear, only the header fields mail needs to be routed, threaded and listed
(OUTSIDE: addresses, subject, date, ids, trace; the subject stays in clear for
search); every other field goes inside, with the Content-* ones, so nothing is
lost and a body line that happens to look like a field never leaks. Bcc is
dropped. Both header sections are rebuilt from the parsed fields of the
gateway's one header/body split (gateway.rawheaders), never copied as raw lines.
The outer message carries the standard two parts: the version part and the
encrypted data.

Armor is written here rather than by pgpy: pgpy computes the armor's CRC-24 in
pure Python (about 1 MiB/s). RFC 9580 §6.1 lets a writer omit the checksum, but
GnuPG 2.2 then reads the END line as data whenever the base64 has no padding,
so the checksum is kept and computed by crcmod's C extension (hundreds of MB/s).
"""

from __future__ import annotations

import base64
import binascii
import secrets

import crcmod

from gateway import rawheaders

ARMOR_LINE = 76  # base64 characters per line (RFC 9580 §6.2)
_NEVER = {"bcc", "mime-version"}
# The clear header fields of an encrypted message; RFC 3834's loop guards included,
# since the autoresponder reads them from the stored copy.
OUTSIDE = frozenset(
    {
        "received",
        "return-path",
        "from",
        "sender",
        "reply-to",
        "to",
        "cc",
        "subject",
        "date",
        "message-id",
        "in-reply-to",
        "references",
        "auto-submitted",
        "precedence",
        "list-id",
        "autocrypt",
    }
)


_crc24 = crcmod.mkCrcFun(0x1864CFB, initCrc=0xB704CE, rev=False, xorOut=0)


def armor(data: bytes, kind: str = "MESSAGE") -> bytes:
    encoded = base64.b64encode(data)
    lines = b"".join(
        encoded[i : i + ARMOR_LINE] + b"\r\n" for i in range(0, len(encoded), ARMOR_LINE)
    )
    checksum = b"=" + base64.b64encode(_crc24(data).to_bytes(3, "big"))
    return (
        f"-----BEGIN PGP {kind}-----\r\n\r\n".encode()
        + lines
        + checksum
        + f"\r\n-----END PGP {kind}-----\r\n".encode()
    )


class ArmorError(ValueError):
    pass


def dearmor(text: bytes, kind: str = "MESSAGE", limit: int = 64 * 1024 * 1024) -> bytes:
    """Binary packets from ASCII armor; the optional CRC line is ignored (RFC 9580 §6.1)."""
    begin, end = f"-----BEGIN PGP {kind}-----".encode(), f"-----END PGP {kind}-----".encode()
    start = text.find(begin)
    stop = text.find(end, start + 1)
    if start == -1 or stop == -1:
        raise ArmorError("no OpenPGP armor found")
    body = text[start + len(begin) : stop]
    lines = body.replace(b"\r\n", b"\n").split(b"\n")
    # Armor headers end at the first empty line.
    try:
        blank = lines.index(b"", 1)
    except ValueError:
        blank = 0
    payload = b"".join(
        line.strip() for line in lines[blank:] if line.strip() and not line.startswith(b"=")
    )
    if len(payload) > limit * 4 // 3 + 4:
        raise ArmorError("armored data too large")
    try:
        return base64.b64decode(payload, validate=True)
    except binascii.Error:
        raise ArmorError("armored data is not valid base64") from None


def to_crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def inner_entity(raw: bytes) -> bytes:
    """The message's MIME entity: Content-* headers, every field not OUTSIDE, and the body
    (what gets encrypted).

    The body is everything `rawheaders.split_message` does not take for a header
    field, a line that is no header field included: every byte of text goes inside.
    """
    block, _sep, body = rawheaders.split_message(raw)
    fields = list(rawheaders.iter_headers(block))
    inside = [f.canonical() for f in fields if f.name.lower() not in OUTSIDE | _NEVER]
    if not any(f.name.lower() == "content-type" for f in fields):
        inside.insert(0, b"Content-Type: text/plain; charset=us-ascii\r\n")
    return b"".join(inside) + b"\r\n" + to_crlf(body)


def outer_headers(raw: bytes) -> bytes:
    """The OUTSIDE header fields, rebuilt from their parsed names and values (never a raw
    line: see gateway.rawheaders)."""
    block, _sep, _body = rawheaders.split_message(raw)
    return b"".join(
        f.canonical() for f in rawheaders.iter_headers(block) if f.name.lower() in OUTSIDE
    )


def autocrypt_header(address: str, public_key: bytes) -> bytes:
    """`Autocrypt:` (autocrypt.org level 1) carrying the sender's key, folded to 76 columns."""
    keydata = base64.b64encode(public_key).decode()
    folded = "\r\n ".join(keydata[i : i + 74] for i in range(0, len(keydata), 74))
    return f"Autocrypt: addr={address}; prefer-encrypt=mutual; keydata=\r\n {folded}\r\n".encode()


def build_encrypted(raw: bytes, armored: bytes, *, extra_headers: bytes = b"") -> bytes:
    """The outer multipart/encrypted message around `armored` (RFC 3156 §4)."""
    boundary = "sealgate-" + secrets.token_hex(12)
    return (
        outer_headers(raw)
        + extra_headers
        + b"MIME-Version: 1.0\r\n"
        + b'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted";\r\n'
        + f' boundary="{boundary}"\r\n'.encode()
        + b"\r\n"
        + b"This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n"
        + f"--{boundary}\r\n".encode()
        + b"Content-Type: application/pgp-encrypted\r\n"
        + b"Content-Description: PGP/MIME version identification\r\n"
        + b"\r\n"
        + b"Version: 1\r\n"
        + b"\r\n"
        + f"--{boundary}\r\n".encode()
        + b'Content-Type: application/octet-stream; name="encrypted.asc"\r\n'
        + b"Content-Description: OpenPGP encrypted message\r\n"
        + b'Content-Disposition: inline; filename="encrypted.asc"\r\n'
        + b"\r\n"
        + armored
        + b"\r\n"
        + f"--{boundary}--\r\n".encode()
    )


def encrypted_payload(raw: bytes) -> bytes | None:
    """The armored OpenPGP message inside a PGP/MIME message built as above, or None."""
    start = raw.find(b"-----BEGIN PGP MESSAGE-----")
    end = raw.find(b"-----END PGP MESSAGE-----", start + 1)
    if start == -1 or end == -1:
        return None
    # GnuPG needs the line end after the END line.
    return raw[start : end + len(b"-----END PGP MESSAGE-----")] + b"\r\n"
