"""Ask a resolver for each record `sealgate dns` prints, and say which match.

A record matches when DNS holds it among possibly others: an MX with the same
host (preference aside), a TXT of the same kind (`v=spf1`, `v=DKIM1`, `v=DMARC1`)
with the same tags, an SRV with the same priority, weight, port and target, a
CNAME to the same host, or (for a name the admin pointed at the portal with A
records instead of a CNAME) the same addresses as the portal's name.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import dns.exception
import dns.resolver
import dns.rrset

from gateway.dnsrecords.records import Record

Status = Literal["ok", "missing", "different", "error"]
NO_ANSWER = "no answer in time"
NOT_ASKED = "not asked: the name server did not answer the query before"


@dataclass(frozen=True)
class Finding:
    record: Record
    status: Status
    found: tuple[str, ...] = ()
    detail: str = ""


def resolver_for(nameserver: str | None, *, timeout: float = 5.0) -> dns.resolver.Resolver:
    """The system resolver, or one that asks only `nameserver` (`IP` or `IP:PORT`)."""
    if not nameserver:
        resolver = dns.resolver.Resolver()
    else:
        resolver = dns.resolver.Resolver(configure=False)
        host, port = nameserver, 53
        if nameserver.count(":") == 1:  # IPv4:port (an IPv6 address has several colons)
            host, _, text = nameserver.partition(":")
            port = int(text)
        elif nameserver.startswith("[") and "]:" in nameserver:
            host, _, text = nameserver[1:].partition("]:")
            port = int(text)
        resolver.nameservers = [host]
        resolver.port = port
    resolver.lifetime = timeout
    return resolver


def _query(resolver: dns.resolver.Resolver, name: str, rtype: str) -> list[str]:
    try:
        answer = resolver.resolve(name, rtype, raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        return []
    rrset: dns.rrset.RRset | None = answer.rrset
    if rrset is None:
        return []
    return [rdata.to_text() for rdata in rrset]


def _txt_text(value: str) -> str:
    """A TXT rdata in presentation form (`"a" "b"`) as the one string it stands for."""
    parts = []
    rest = value.strip()
    while rest.startswith('"'):
        end = rest.index('"', 1)
        parts.append(rest[1:end])
        rest = rest[end + 1 :].strip()
    return "".join(parts) if parts else value


def _tags(text: str) -> tuple[str, dict[str, str]]:
    tags: dict[str, str] = {}
    for part in text.split(";"):
        key, _, value = part.partition("=")
        if key.strip():
            tags[key.strip().lower()] = "".join(value.split())
    return tags.get("v", "").lower(), tags


def _spf_terms(text: str) -> list[str]:
    return text.lower().split()


def _txt_matches(expected: str, found: list[str]) -> tuple[bool, list[str]]:
    want = _txt_text(expected)
    texts = [_txt_text(f) for f in found]
    if want.lower().startswith("v=spf1"):
        same_kind = [t for t in texts if t.lower().startswith("v=spf1")]
        return any(_spf_terms(t) == _spf_terms(want) for t in same_kind), same_kind
    kind, tags = _tags(want)
    same_kind = [t for t in texts if _tags(t)[0] == kind]
    return any(_tags(t)[1] == tags for t in same_kind), same_kind


def _first_word_dropped(value: str) -> str:
    return value.split(None, 1)[1].lower() if " " in value else value.lower()


def check_record(resolver: dns.resolver.Resolver, record: Record) -> Finding:
    try:
        found = _query(resolver, record.name, record.rtype)
        if record.rtype == "TXT":
            ok, relevant = _txt_matches(record.value, found)
            found = relevant
        elif record.rtype == "MX":
            want = _first_word_dropped(record.value)
            ok = any(_first_word_dropped(f) == want for f in found)
        elif record.rtype == "CNAME" and not found:
            mine = set(_query(resolver, record.name, "A"))
            portal = set(_query(resolver, record.value, "A"))
            if mine:
                ok = mine == portal
                found = sorted(mine)
                return Finding(record, "ok" if ok else "different", tuple(found), "A records")
            ok = False
        else:
            ok = any(f.lower() == record.value.lower() for f in found)
    except dns.exception.Timeout:
        return Finding(record, "error", (), NO_ANSWER)
    except dns.exception.DNSException as exc:
        return Finding(record, "error", (), type(exc).__name__)
    if ok:
        return Finding(record, "ok", tuple(found))
    return Finding(record, "different" if found else "missing", tuple(found))


def check(resolver: dns.resolver.Resolver, records: list[Record]) -> Iterator[Finding]:
    """Each record's finding as soon as it is known, so the command prints while it asks.

    After a query that got no answer in time the others are not asked: the name server
    (or the system's resolver) is not answering, and a dozen more timeouts only made the
    admin wait a minute, with nothing printed, to learn the same thing."""
    silent = False
    for record in records:
        if silent:
            yield Finding(record, "error", (), NOT_ASKED)
            continue
        finding = check_record(resolver, record)
        silent = finding.detail == NO_ANSWER
        yield finding
