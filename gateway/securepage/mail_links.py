"""Which links in a shown mail stay links: absolute http(s) and mailto, nothing else.

A mail is shown on the portal's own origin (the webmail, the secure page). A relative
link there (`/logout`, `/mail/7`, `?x`, `#top`) points into the portal itself, and so
do forms a browser resolves against the page although they look absolute:
`https:/logout` and `https:logout` (a special scheme equal to the page's is read
relative to it) and `//host` (the page's scheme). Every change in the portal needs a
POST with a CSRF token, so such a link did no harm, but a mail has no business
steering its reader around the portal. Only a link that names its own scheme and host
stays: `scheme://host…` with a host, or `mailto:`.

The value is checked as a browser reads it (WHATWG URL parsing): spaces and C0
controls around it dropped, tabs and line breaks inside it removed; the cleaned form
is what is kept, so the checked string is the one the browser follows.
"""

from __future__ import annotations

import re

# WHATWG: C0 controls and space are stripped from both ends; tab, LF, CR anywhere.
_ENDS = "".join(map(chr, range(0x21)))
_INSIDE = re.compile("[\t\n\r]")
# A host right after the two slashes: no further slash or backslash (a browser skips
# them and would take what follows for the host), no empty authority.
_OUTSIDE = re.compile(r"(?:https?://[^/\\?#@\s][^/\\?#\s]*(?:[/\\?#].*)?|mailto:.*)", re.I | re.S)

URL_ATTRIBUTES = frozenset({"href", "cite"})


def outside_link(value: str) -> str | None:
    """`value` as a browser would read it, if it is an absolute http(s) URL with a host
    or a mailto URL; None for anything a browser resolves against the page."""
    cleaned = _INSIDE.sub("", value.strip(_ENDS))
    return cleaned if _OUTSIDE.fullmatch(cleaned) else None


def keep_outside_links(_tag: str, attribute: str, value: str) -> str | None:
    """An nh3 `attribute_filter`: URL attributes keep only outside links."""
    if attribute in URL_ATTRIBUTES:
        return outside_link(value)
    return value
