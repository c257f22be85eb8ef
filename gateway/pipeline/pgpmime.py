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
encrypted data. A signed copy's entity also carries the clear fields a writer sets,
so that the signature covers them (RFC 9788 header protection,
gateway.mail.header_protection).

A large message is copied as few times as the steps allow: the inner entity is
made in one join (no line-end rewrite when the body has CRLF already), and the
binary ciphertext is armored straight into the outer message's buffer
(`keystore.packets.write_armor`), which becomes the message without a further
copy. One outer message can serve every copy with the same headers (the
recipients' copy and the Sent copy).
"""

from __future__ import annotations

import base64
import io
import secrets

from gateway import rawheaders
from gateway.mail import header_protection
from keystore import packets

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


# The OUTSIDE fields a signed copy also carries inside (RFC 9788 header protection): what a
# writer sets. Trace fields and Autocrypt are the transport's; Bcc is never written.
PROTECTED = OUTSIDE - {"received", "return-path", "autocrypt"}
# In a signed copy the HP-Outer records are the gateway's account of its own outer header:
# one that came with the submitted message would be a claim about a header it never saw.
_NEVER_PROTECTED = OUTSIDE | _NEVER | {"hp-outer"}


def to_crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def inner_entity(raw: bytes, *, protect_headers: bool = False) -> bytes:
    """The message's MIME entity: Content-* headers, every field not OUTSIDE, and the body
    (what gets encrypted).

    The body is everything `rawheaders.split_message` does not take for a header
    field, a line that is no header field included: every byte of text goes inside.

    With `protect_headers` (a signed copy) the entity also carries the PROTECTED fields
    and their `HP-Outer` records, and says so on its Content-Type (RFC 9788, see
    gateway.mail.header_protection): the signature then covers them too.
    """
    end, start = rawheaders.header_bounds(raw)  # the body is copied once, into the entity
    block = raw[:end]
    fields = list(rawheaders.iter_headers(block))
    inside: list[bytes]
    if protect_headers:
        inside, records = [], []
        typed = False
        for f in fields:
            name = f.name.lower()
            if name in PROTECTED:
                line = f.canonical()
                inside.append(line)
                records.append(header_protection.outer_record(f, line))
            elif name == "content-type" and not typed:
                inside.append(header_protection.content_type(f))
                typed = True
            elif name not in _NEVER_PROTECTED:
                inside.append(f.canonical())
        if not typed:
            inside.insert(0, header_protection.DEFAULT_CONTENT_TYPE)
        inside += records
    else:
        inside = [f.canonical() for f in fields if f.name.lower() not in OUTSIDE | _NEVER]
        if not any(f.name.lower() == "content-type" for f in fields):
            inside.insert(0, b"Content-Type: text/plain; charset=us-ascii\r\n")
    if raw.count(b"\n", start) == raw.count(b"\r\n", start):
        return b"".join([*inside, b"\r\n", memoryview(raw)[start:]])
    return b"".join([*inside, b"\r\n", to_crlf(raw[start:])])


def outer_headers(raw: bytes) -> bytes:
    """The OUTSIDE header fields, rebuilt from their parsed names and values (never a raw
    line: see gateway.rawheaders)."""
    return b"".join(
        f.canonical()
        for f in rawheaders.iter_headers(rawheaders.header_block(raw))
        if f.name.lower() in OUTSIDE
    )


def autocrypt_header(address: str, public_key: bytes) -> bytes:
    """`Autocrypt:` (autocrypt.org level 1) carrying the sender's key, folded to 76 columns."""
    keydata = base64.b64encode(public_key).decode()
    folded = "\r\n ".join(keydata[i : i + 74] for i in range(0, len(keydata), 74))
    return f"Autocrypt: addr={address}; prefer-encrypt=mutual; keydata=\r\n {folded}\r\n".encode()


def build_encrypted(raw: bytes, ciphertext: bytes, *, extra_headers: bytes = b"") -> bytes:
    """The outer multipart/encrypted message (RFC 3156 §4) around the binary OpenPGP
    `ciphertext`, which is armored straight into it."""
    boundary = "sealgate-" + secrets.token_hex(12)
    out = io.BytesIO()
    out.write(outer_headers(raw))
    out.write(extra_headers)
    out.write(
        b"MIME-Version: 1.0\r\n"
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
    )
    packets.write_armor(out, ciphertext)
    out.write(b"\r\n" + f"--{boundary}--\r\n".encode())
    # BytesIO hands over its own buffer (trimmed in place) when nothing else holds it.
    return out.getvalue()


def encrypted_payload(raw: bytes) -> bytes | None:
    """The armored OpenPGP message inside a PGP/MIME message built as above, or None.

    Looked for in the body only: a header field of mail from outside may hold an
    armor line too."""
    start = raw.find(b"-----BEGIN PGP MESSAGE-----", rawheaders.header_bounds(raw)[1])
    end = raw.find(b"-----END PGP MESSAGE-----", start + 1)
    if start == -1 or end == -1:
        return None
    # GnuPG needs the line end after the END line.
    return raw[start : end + len(b"-----END PGP MESSAGE-----")] + b"\r\n"
