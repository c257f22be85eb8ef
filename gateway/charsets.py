"""Decoding text whose charset label came from outside (a MIME part, an encoded word).

A label is whatever the sender wrote. Python's codec lookup turns most bad labels into
a `LookupError`, but not all: "idna" refuses the "replace" error handler, "undefined"
fails on every input (both raise `UnicodeError`), and a label holding a NUL raises
`ValueError`. Each of them once made storing an inbound message raise, which the MX
answered with 451 (retried by the sender for days).
"""

from __future__ import annotations

FALLBACK = "utf-8"


def decode_text(data: bytes, charset: str | None) -> str:
    """`data` decoded in `charset` with bad bytes replaced; in UTF-8 when the label names
    no text codec Python has, or one that cannot decode with replacement."""
    try:
        return data.decode(charset or FALLBACK, "replace")
    except (LookupError, ValueError):  # UnicodeError is a ValueError
        return data.decode(FALLBACK, "replace")
