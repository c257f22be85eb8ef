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

An absolute link to the portal's own host (`https://portal.example/account/...`) is
no link either: from inside a trusted-looking message it would take the reader into
their own account pages with parameters a stranger chose. The host is compared as a
browser reads it (user info and port dropped, percent-decoded, mapped by UTS #46 so
full-width letters and `。` count, IPv4 in its decimal, octal and hex spellings, IPv6
compressed), in any scheme and on any port (cookies do not keep ports apart); a host
no browser could read is no link.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import urllib.parse
from collections.abc import Callable, Collection

import idna

from gateway.idn import InvalidDomainName, a_label, u_label

# WHATWG: C0 controls and space are stripped from both ends; tab, LF, CR anywhere.
_ENDS = "".join(map(chr, range(0x21)))
_INSIDE = re.compile("[\t\n\r]")
# A host right after the two slashes: no further slash or backslash (a browser skips
# them and would take what follows for the host), no empty authority.
_OUTSIDE = re.compile(r"(?:https?://[^/\\?#@\s][^/\\?#\s]*(?:[/\\?#].*)?|mailto:.*)", re.I | re.S)

URL_ATTRIBUTES = frozenset({"href", "cite"})


def outside_link(value: str, own_hosts: Collection[str] = ()) -> str | None:
    """`value` as a browser would read it, if it is an absolute http(s) URL with a host
    that is none of `own_hosts` (as `host_forms` gives them), or a mailto URL; None for
    anything a browser resolves against the page or that leads to the portal itself."""
    cleaned = _INSIDE.sub("", value.strip(_ENDS))
    if not _OUTSIDE.fullmatch(cleaned):
        return None
    if cleaned[:7].lower() == "mailto:":
        return cleaned
    forms = host_forms(_url_host(cleaned))
    if forms is None or not forms.isdisjoint(own_hosts):
        return None
    return cleaned


def _url_host(url: str) -> str:
    """The host of an absolute `scheme://authority...` URL, as written (IPv6 bracketed)."""
    authority = re.split(r"[/\\?#]", url.split("://", 1)[1], maxsplit=1)[0]
    host = authority.rpartition("@")[2]
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.partition(":")[0]


# WHATWG forbidden domain code points (beyond C0 controls, space and DEL).
_FORBIDDEN_IN_HOST = frozenset("#%/:<>?@[\\]^|")


def host_forms(host: str) -> frozenset[str] | None:
    """The names a browser may reach `host` (a URL's host, IPv6 in brackets) under, for
    comparing: an IP address in its one canonical text, a domain lower-cased without
    a trailing dot in its Unicode and ASCII forms. None for a host no browser reads."""
    if host.startswith("["):
        try:
            address = ipaddress.IPv6Address(host[1:-1] if host.endswith("]") else "")
        except ValueError:
            return None
        mapped = address.ipv4_mapped
        return frozenset({address.compressed, *([str(mapped)] if mapped else [])})
    try:
        name = idna.uts46_remap(
            urllib.parse.unquote(host, errors="strict"), std3_rules=False, transitional=False
        )
    except (UnicodeError, ValueError):
        return None
    if not name or any(c in _FORBIDDEN_IN_HOST or ord(c) <= 0x20 or c == "\x7f" for c in name):
        return None
    ipv4 = _ipv4(name)
    if ipv4 is not None:
        return frozenset({ipv4}) if ipv4 else None
    name = name.rstrip(".")
    forms = {name}
    for convert in (a_label, u_label):
        with contextlib.suppress(InvalidDomainName):
            forms.add(convert(name))
    return frozenset(forms)


def _ipv4(name: str) -> str | None:
    """WHATWG's IPv4 parser: the dotted-decimal address a host ending in a number
    stands for (`2130706433`, `0x7f.1`, `0177.0.0.1` are all 127.0.0.1); "" for one
    that ends in a number but is no address (an invalid URL); None for a domain."""
    parts = name.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if _ipv4_number(parts[-1]) is None and not re.fullmatch(r"[0-9]+", parts[-1]):
        return None
    numbers = [_ipv4_number(part) for part in parts]
    if len(parts) > 4 or None in numbers:
        return ""
    values = [n for n in numbers if n is not None]
    if any(n > 255 for n in values[:-1]) or values[-1] >= 256 ** (5 - len(values)):
        return ""
    total = values[-1] + sum(n * 256 ** (3 - i) for i, n in enumerate(values[:-1]))
    return str(ipaddress.IPv4Address(total))


def _ipv4_number(part: str) -> int | None:
    base = 10
    if part[:2].lower() == "0x":
        base, part = 16, part[2:]
    elif len(part) > 1 and part.startswith("0"):
        base, part = 8, part[1:]
    if part == "":
        return 0 if base != 10 else None
    digits = {10: "0123456789", 8: "01234567", 16: "0123456789abcdefABCDEF"}[base]
    if any(c not in digits for c in part):
        return None
    return int(part, base)


def own_host_forms(hosts: Collection[str]) -> frozenset[str]:
    """Every form of the portal's own `hosts` (bare names or addresses, no port), for
    `outside_link`: one that is no readable host is left out."""
    forms: set[str] = set()
    for host in hosts:
        bracketed = f"[{host}]" if ":" in host else host
        forms |= host_forms(bracketed) or frozenset()
    return frozenset(forms)


def link_filter(own_hosts: Collection[str] = ()) -> Callable[[str, str, str], str | None]:
    """An nh3 `attribute_filter`: URL attributes keep only outside links, none to
    `own_hosts` (as `own_host_forms` gives them)."""

    def keep_outside_links(_tag: str, attribute: str, value: str) -> str | None:
        if attribute in URL_ATTRIBUTES:
            return outside_link(value, own_hosts)
        return value

    return keep_outside_links


keep_outside_links = link_filter()
