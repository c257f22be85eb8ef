"""Stored messages as IMAP serves them: CRLF line ends only (RFC 3501 section 2.3, RFC 5322).

Intake repairs the header section alone (gateway.mail.header_line_ends) and keeps
the body as it came, bare CRs and LFs included, and messages stored before that
repair kept odd line ends in their headers as well. IMAP served those bytes as
stored: each client then read a bare CR or LF its own way (a line end to some,
data to others), and a bare CR followed by text could even draw a line the sender
never wrote. Every message is now served as the relay sends it on
(gateway.relay: aiosmtplib makes every bare CR or LF of the DATA a CRLF): its
header section as intake repairs it, each bare CR or LF of the body a CRLF.

RFC822.SIZE is the size of what is served, known before the message is loaded:
`served_size` is what intake stores as a message's size (gateway.mailbox), and
migration 0019 recomputed it for messages stored before. A message with CRLF line
ends only (nearly every one) is served as it is stored, after three `bytes.count`
calls over it.
"""

from __future__ import annotations

import re

from gateway.mail import header_line_ends

# Each line end of any shape, CRLF taken first: a CR before CRLF is one line end more.
_LINE_END = re.compile(rb"\r\n|\n|\r")


def served(raw: bytes) -> bytes:
    """`raw` with CRLF line ends only: the header section repaired as at intake, each
    bare CR or LF of the body a CRLF. `raw` itself (no copy) when it has nothing odd."""
    if header_line_ends.is_plain(raw, len(raw)):
        return raw
    repaired = header_line_ends.normalize(raw)
    end = header_line_ends.header_section_end(repaired)
    return repaired[:end] + _LINE_END.sub(b"\r\n", repaired[end:])


def served_size(raw: bytes) -> int:
    """The number of octets `served(raw)` has (RFC822.SIZE)."""
    if header_line_ends.is_plain(raw, len(raw)):
        return len(raw)
    return len(served(raw))
