"""The sender's Sent copy of a message that went out through secure pages.

Encrypted to the sender's own key, that copy would let database plus master key
read what only the password may open. So it is sealed under the message's
password instead (gateway.securepage.crypto), and the sender types the password
to read it, as the recipients do. The headers stay in clear as on every
encrypted Sent copy (folder list, subject search); inside is the whole submitted
message, Bcc included.
"""

from __future__ import annotations

import base64
import binascii

from gateway import rawheaders
from gateway.pipeline import pgpmime
from gateway.securepage import crypto

CONTENT_TYPE = "application/x-sealgate-sealed"
_LINE = 76


def binding(queue_id: str, sender: str) -> str:
    """What the copy's blob is bound to: a blob moved to another message does not open."""
    return f"{queue_id}\0{sender}"


def build(raw: bytes, kek: crypto.PasswordKey, *, queue_id: str, sender: str) -> bytes:
    blob = crypto.seal_copy(raw, kek, binding=binding(queue_id, sender))
    return with_blob(raw, blob)


def with_blob(raw: bytes, blob: bytes) -> bytes:
    """`raw`'s clear headers around a sealed blob (a new one after a new password)."""
    encoded = base64.b64encode(blob)
    lines = b"".join(encoded[i : i + _LINE] + b"\r\n" for i in range(0, len(encoded), _LINE))
    return (
        pgpmime.outer_headers(raw)
        + b"MIME-Version: 1.0\r\n"
        + f"Content-Type: {CONTENT_TYPE}\r\n".encode()
        + b"Content-Transfer-Encoding: base64\r\n"
        + b"\r\n"
        + lines
    )


def is_sealed(raw: bytes) -> bool:
    """Whether `raw` is a Sent copy built here (by its Content-Type; the body is not read)."""
    content_type = (rawheaders.get(raw, "Content-Type") or "").strip().lower()
    return content_type.split(";")[0].strip() == CONTENT_TYPE


def blob_of(raw: bytes) -> bytes | None:
    """The sealed blob of a Sent copy built here; None for any other or a damaged one."""
    if not is_sealed(raw):
        return None
    body = rawheaders.split_message(raw)[2]
    try:
        return base64.b64decode(b"".join(body.split()), validate=True)
    except binascii.Error:
        return None
