"""Step `check-structure`: refuse MIME that would make a parser recurse or crawl.

Python's email parser recurses once per nesting level (RecursionError near 500
levels) and takes many seconds on hundreds of thousands of empty parts, so the
structure is measured first by a linear scan of boundary lines that never builds
a tree (nor a list of lines: past the headers it jumps from one "--" line to the
next, and stops where no multipart is open). Only a message within the limits is
ever handed to the real parser.
"""

from __future__ import annotations

from email.message import Message

from gateway import rawheaders
from gateway.pipeline.errors import RejectMessage
from gateway.smtp_codes import MIME_TOO_COMPLEX

_MAX_HEADER_BLOCK = 256 * 1024


def check_structure(raw: bytes, *, max_depth: int, max_parts: int) -> None:
    """Raise RejectMessage (554 5.6.0) when nesting exceeds max_depth or parts exceed max_parts."""
    # Each stack entry is a multipart boundary, or None for an enclosed message/rfc822.
    stack: list[bytes | None] = []
    parts = 0
    in_headers = True
    header_lines: list[bytes] = []
    header_size = 0
    pos, done = 0, False
    while not done:
        if not in_headers:
            # Only a boundary line can change anything now: jump to the next line that
            # starts with "--", or stop when no multipart is open (no copy, no line list).
            if not stack:
                return
            if not raw.startswith(b"--", pos):
                found = raw.find(b"\n--", pos)
                if found == -1:
                    return
                pos = found + 1
        newline = raw.find(b"\n", pos)
        if newline == -1:
            line, done = raw[pos:], True
        else:
            line, pos = raw[pos:newline], newline + 1
        if line.endswith(b"\r"):
            line = line[:-1]
        if in_headers:
            # The gateway's one header/body split (gateway.rawheaders): an empty line ends
            # the headers, and so does a line that is no field, which is then body.
            if line and ((header_lines and line[:1] in b" \t") or rawheaders.is_field_start(line)):
                header_size += len(line)
                if header_size > _MAX_HEADER_BLOCK:
                    raise RejectMessage(MIME_TOO_COMPLEX.format(reason="header block too large"))
                header_lines.append(line)
                continue
            kind, boundary = _content_type(header_lines)
            header_lines, header_size = [], 0
            in_headers = False
            if kind.startswith("multipart/") and boundary:
                stack.append(boundary)
            elif kind in ("message/rfc822", "message/global"):
                stack.append(None)
                in_headers = True
            if len(stack) > max_depth:
                raise RejectMessage(
                    MIME_TOO_COMPLEX.format(reason=f"nested deeper than {max_depth} levels")
                )
            if not line:
                continue
            if in_headers:
                # message/rfc822 whose headers start without an empty line: this line is
                # already the enclosed message's first (or its body).
                if rawheaders.is_field_start(line):
                    header_lines.append(line)
                    continue
                in_headers = False
        if not line.startswith(b"--") or not stack:
            continue
        for level in range(len(stack) - 1, -1, -1):
            boundary = stack[level]
            if boundary is None or not line.startswith(b"--" + boundary):
                continue
            rest = line[2 + len(boundary) :]
            if rest.startswith(b"--"):
                del stack[level:]
            elif not rest.strip():
                del stack[level + 1 :]
                parts += 1
                if parts > max_parts:
                    raise RejectMessage(
                        MIME_TOO_COMPLEX.format(reason=f"more than {max_parts} parts")
                    )
                in_headers = True
            break


def _content_type(header_lines: list[bytes]) -> tuple[str, bytes | None]:
    value: list[str] = []
    collecting = False
    for line in header_lines:
        text = line.decode("utf-8", "replace")
        if text[:1] in (" ", "\t"):
            if collecting:
                value.append(text)
            continue
        name, _, rest = text.partition(":")
        collecting = name.strip().lower() == "content-type"
        if collecting:
            value = [rest]
    if not value:
        return "text/plain", None
    msg = Message()
    msg["Content-Type"] = " ".join(v.strip() for v in value)
    boundary = msg.get_boundary()
    return msg.get_content_type(), boundary.encode("utf-8", "replace") if boundary else None
