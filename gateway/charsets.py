"""Decoding text whose charset label came from outside (a MIME part, an encoded word).

A label is whatever the sender wrote. Python's codec lookup turns most bad labels into
a `LookupError`, but not all: "idna" refuses the "replace" error handler, "undefined"
fails on every input (both raise `UnicodeError`), and a label holding a NUL raises
`ValueError`. Each of them once made storing an inbound message raise, which the MX
answered with 451 (retried by the sender for days).
"""

from __future__ import annotations

import codecs

FALLBACK = "utf-8"

# Python text codecs that are no character set of mail: they undo a transformation
# (IDNA, Punycode, Python's escapes) or refuse everything. "punycode" decodes most text
# to nothing or to other letters; a sender who writes such a label gets UTF-8.
NOT_CHARSETS = frozenset({"idna", "punycode", "unicode-escape", "raw-unicode-escape", "undefined"})


def decode_text(data: bytes, charset: str | None) -> str:
    """`data` decoded in `charset` with bad bytes replaced; in UTF-8 when the label names
    no character set Python has, or one that cannot decode with replacement."""
    try:
        if charset and codecs.lookup(charset).name not in NOT_CHARSETS:
            return data.decode(charset, "replace")
    except (LookupError, ValueError):  # UnicodeError is a ValueError
        pass
    return data.decode(FALLBACK, "replace")


# Embeddings, overrides and isolates (and their ends): U+202A..U+202E, U+2066..U+2069.
_BIDI_CONTROLS = dict.fromkeys([*range(0x202A, 0x202F), *range(0x2066, 0x206A)])


def without_bidi_controls(text: str) -> str:
    """`text` without the bidi controls that reorder what follows them.

    A header shown in a page is one line of outside text: `Invoice \\u202efdp.exe` reads
    "Invoice exe.pdf" and a display name can turn the address beside it around.
    Right-to-left scripts need none of these to show right."""
    return text.translate(_BIDI_CONTROLS)
