"""The address of an SMTP path (`MAIL FROM:<a@b>`, `RCPT TO:<a@b>`), the common shape fast.

aiosmtpd reads each path with the email package's RFC 5322 parser
(`get_angle_addr`), which builds a token tree for every address: a third of the
SMTP edge's CPU per message, for paths that are nearly always `<dot-atom@domain>`.
`simple_path` answers that shape with one regular expression and gives exactly
what the parser gives for it (the address as written and the text after `>`);
any other shape (quoted local parts, comments, source routes, `<>`, 8-bit
addresses) returns None and goes to aiosmtpd's parser.
"""

from __future__ import annotations

import re

# RFC 5321 §4.1.2 Dot-string and a domain of letters, digits and hyphens: a subset
# of what the RFC 5322 parser accepts, so it can only agree with it.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9-]+"
_SIMPLE = re.compile(rf"<({_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})*)>")


def simple_path(arg: str) -> tuple[str, str] | None:
    """(address, text after the path) for `<dot-atom@domain>...`, else None."""
    found = _SIMPLE.match(arg)
    if found is None:
        return None
    rest = arg[found.end() :]
    if rest[:1] in (" ", "\t", "("):
        rest = rest.lstrip()  # the parser takes folding white space after the path
        if rest.startswith("("):
            return None  # and comments: their reading is the parser's to give
    return found.group(1), rest
