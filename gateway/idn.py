"""Internationalized domain names: the one place a name becomes its A-label or U-label.

IDNA 2008 (RFC 5890-5893) with the UTS #46 mapping, non-transitional: what mail and
DNS use today, so `straße.test` is `xn--strae-oqa.test` (not `strasse.test`, as
Python's IDNA 2003 codec has it). A label that is ASCII and not an A-label
(`example`, `_domainkey`, `_tcp`) is no IDN and is kept as it is, lower-cased.
Names are returned without a trailing dot; a caller that needs one adds it.
"""

from __future__ import annotations

import idna

# RFC 1035: 63 octets a label, 253 characters of name without the trailing dot.
MAX_LABEL_CHARS = 63
MAX_NAME_CHARS = 253


class InvalidDomainName(ValueError):
    """The name is not a valid domain name under IDNA 2008."""


def _labels(domain: str) -> list[str]:
    name = domain
    name = name[:-1] if name.endswith(".") else name
    try:
        name = idna.uts46_remap(name, std3_rules=False, transitional=False)
    except UnicodeError as e:
        raise InvalidDomainName(f"not a valid domain name: {domain!r} ({e})") from None
    labels = name.split(".")
    if not name or "" in labels:
        raise InvalidDomainName(f"not a valid domain name: {domain!r} (empty label)")
    return labels


def _is_idn(label: str) -> bool:
    return not label.isascii() or label.startswith("xn--")


def a_label(domain: str) -> str:
    """`domain` in its ASCII form, each IDN label as its A-label, lower-cased."""
    try:
        labels = [idna.alabel(x).decode("ascii") if _is_idn(x) else x for x in _labels(domain)]
    except UnicodeError as e:
        raise InvalidDomainName(f"not a valid domain name: {domain!r} ({e})") from None
    name = ".".join(labels).lower()
    if any(len(x) > MAX_LABEL_CHARS for x in labels):
        raise InvalidDomainName(f"not a valid domain name: {domain!r} (a label over 63 octets)")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidDomainName(f"not a valid domain name: {domain!r} (over 253 octets)")
    return name


def u_label(domain: str) -> str:
    """`domain` in its Unicode form, each IDN label as its U-label, lower-cased."""
    a_label(domain)  # the same checks, length included
    try:
        labels = [idna.ulabel(x) if _is_idn(x) else x for x in _labels(domain)]
    except UnicodeError as e:
        raise InvalidDomainName(f"not a valid domain name: {domain!r} ({e})") from None
    return ".".join(labels).lower()
