"""One reading of the top-level header section for every reader: line ends made plain at intake.

Readers disagree on a bare CR (a CR not followed by LF) in a header section.
The gateway's parser (gateway.rawheaders) takes it as part of the line, as
Postfix does; Python's email parser (the webmail), and many mail programs that
read the stored copy over IMAP, take it as a line end. So a hosted user's
`X-Note: x<CR>From: ceo@bank.example` was one X-Note field to
check-header-sender, and a second From to the recipient's mail program. The
relay already sends such a CR as a space (gateway.transport.sevenbit); here
every entry point does the same before anything reads the message, so what the
checks see is what is stored and what leaves.

A bare LF, on the other hand, is a line end to every reader the gateway has or
feeds: rawheaders, Python's parser, pymap, mail programs, and the relay (DATA
knows no other line end than CRLF, gateway.relay.wire_form). It becomes the CRLF
it stands for, and the stored header is then CRLF throughout, as RFC 5322 and
IMAP (RFC 3501) want it and strict readers expect.

Refuse or repair? What the best MTAs do since the SMTP smuggling reports (2023):
- Postfix never took a bare CR for a line end and keeps it as data; a bare LF is
  a line end, and since 3.9 `smtpd_forbid_bare_newline = normal` (the default)
  still accepts it and processes it as CRLF, refusing only an end of data that
  is not CRLF.CRLF (`strict` refuses any bare LF, with an exclusion list for
  `mynetworks`, because legitimate senders still send them).
- sendmail 8.18 refuses bare CR and bare LF by default (srv_features `u`, `g`,
  with `U`, `G` to accept them), and its notes warn that this loses mail from
  broken but legitimate clients.
The end of DATA here is already CRLF.CRLF only (gateway.smtp_data), which is
what closes smuggling. What is left is a message whose header section holds
an odd line end; refusing it would lose mail from the Internet that Postfix
accepts, and from a hosted user's sloppy script, while repairing it loses
nothing any reader showed before but the disagreement. So every entry point
repairs: SMTP submission (587/465 and the Postfix content filter), inbound MX,
the webmail's Send (it builds its header with Python's email, so this finds
nothing there, but the pipeline does not know who called it), and IMAP APPEND
(the user's own folders, but the same readers show them; keeping "no stored
message has an odd line end in its header" true everywhere is simpler than
deciding which folders matter).

A first line that starts with white space is made to start without it. Python's
parser skips such a line and reads the fields after it as header; rawheaders
(and Postfix) end the header section there. A field the gateway prepends
(Received, or From/Date/Message-ID in add-missing-headers) then turned that line
into its continuation and the fields after it into header for everyone, though
no check had seen them. A bare CR at the very start becomes such a space, so this
is part of the same repair.

The header section is what the relay converts (sevenbit): everything up to the
first empty line (CRLF or LF at the start of the message or after an LF), the
whole message when there is none: every field any reader may take for one. The
empty line itself is made CRLF too. A message with none of this pays three
`bytes.count` calls over its header section and two searches for its end.
"""

from __future__ import annotations

import re

_BARE_CR = re.compile(rb"\r(?!\n)")
_BARE_LF = re.compile(rb"(?<!\r)\n")


def header_section_end(raw: bytes) -> int:
    """Where the top-level header section ends: the offset of its first empty line (a CRLF
    or LF at the start of `raw` or right after an LF), or len(raw) when there is none."""
    if raw.startswith((b"\n", b"\r\n")):
        return 0
    crlf = raw.find(b"\n\r\n")
    # An LF LF before that CRLF (bounded, so a long message is not searched twice).
    lf = raw.find(b"\n\n", 0, len(raw) if crlf == -1 else crlf + 1)
    found = [at for at in (crlf, lf) if at != -1]
    return min(found) + 1 if found else len(raw)


def is_plain(raw: bytes, end: int) -> bool:
    """Whether `raw[:end]` has CRLF line ends only and `raw` no white space first."""
    if raw[:1] in (b" ", b"\t"):
        return False
    lfs = raw.count(b"\n", 0, end)
    return raw.count(b"\r", 0, end) == lfs and raw.count(b"\r\n", 0, end) == lfs


def normalize(raw: bytes) -> bytes:
    """`raw` with, in its top-level header section, each bare CR a space, each bare LF a
    CRLF, and no white space before the first line's text; the empty line that ends the
    section a CRLF. `raw` itself (no copy) when there is nothing to change."""
    end = header_section_end(raw)
    separator = raw[end : end + 1] == b"\n"
    if not separator and is_plain(raw, end):
        return raw
    head = _BARE_LF.sub(b"\r\n", _BARE_CR.sub(b" ", raw[:end]))
    head = head.lstrip(b" \t")
    if separator:
        return b"".join((head, b"\r\n", memoryview(raw)[end + 1 :]))
    return b"".join((head, memoryview(raw)[end:]))
