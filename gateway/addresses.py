"""Mail address syntax: one place that normalises what users, CLIs and SMTP give us."""

from __future__ import annotations

import re

# Deliberately conservative: hosted addresses are created by admins, and the local
# part of an external address is only ever compared, never interpreted.
_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}"
_DOMAIN = r"(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
_ADDRESS_RE = re.compile(rf"^{_LOCAL}@{_DOMAIN}$")
_DOMAIN_RE = re.compile(rf"^{_DOMAIN}$")


class InvalidAddress(ValueError):
    pass


def normalize_address(value: str) -> str:
    """Lower-case it (hosted addresses are case-insensitive), refuse anything that is not one."""
    value = value.strip()
    if not _ADDRESS_RE.match(value) or ".." in value:
        raise InvalidAddress(f"not a valid mail address: {value!r}")
    return value.lower()


def normalize_domain(value: str) -> str:
    value = value.strip().lower().rstrip(".")
    if not _DOMAIN_RE.match(value):
        raise InvalidAddress(f"not a valid domain name: {value!r}")
    return value


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()
