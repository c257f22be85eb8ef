"""The records to publish for one hosted domain, as zone-file lines an admin can paste.

Names are absolute (with the trailing dot) so the lines mean the same in any zone
file, and in their A-label (`xn--bcher-kva.example.` for a domain hosted as
`bücher.example`), the only form a zone file and DNS hold (RFC 5890); long TXT
values are split into 255-byte strings, as the wire format needs.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from gateway import idn
from gateway.dkim import keys as dkim_keys
from gateway.models import DkimKey
from gateway.settings import Settings

TXT_CHUNK = 255
# RFC 6186 s.4: a target of "." says the service is not offered at this domain.
NOT_OFFERED = "0 0 0 ."


@dataclass(frozen=True)
class Record:
    name: str
    rtype: str
    value: str
    purpose: str


def absolute(name: str) -> str:
    """`name` as a zone file writes it: A-label (as DKIM signs it), with the trailing dot."""
    name = name.rstrip(".").lower()
    try:
        return idn.a_label(name) + "."
    except idn.InvalidDomainName:
        return name + "."


def mail_host(settings: Settings) -> str:
    return absolute(settings.dns.mail_host or settings.smtp.hostname)


def web_host(settings: Settings) -> str:
    """The portal's host name (it serves WKD and autoconfig for every hosted domain)."""
    return urlsplit(settings.portal.base_url).hostname or "localhost"


def txt_value(text: str) -> str:
    """`text` as one or more quoted character-strings of at most 255 bytes each."""
    data = text.encode("ascii")
    chunks = [data[i : i + TXT_CHUNK] for i in range(0, len(data), TXT_CHUNK)] or [b""]
    return " ".join(f'"{chunk.decode("ascii")}"' for chunk in chunks)


def _host_record(name: str, host: str, purpose: str) -> Record | None:
    """A CNAME to the portal, or its address when the portal is reached by IP."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if absolute(host) == name:
            return None  # the portal already answers at this very name
        return Record(name, "CNAME", absolute(host), purpose)
    return Record(name, "A" if ip.version == 4 else "AAAA", str(ip), purpose)


def _srv(settings: Settings, port: int) -> str:
    return f"0 1 {port} {mail_host(settings)}" if port else NOT_OFFERED


def domain_records(settings: Settings, domain: str, dkim: list[DkimKey]) -> list[Record]:
    """Everything `domain` needs in DNS for mail through this gateway, in print order."""
    zone = absolute(domain)
    host = mail_host(settings)
    dns = settings.dns
    records = [
        Record(zone, "MX", f"10 {host}", "mail for the domain comes to this gateway"),
        Record(zone, "TXT", txt_value(dns.spf), "SPF: who may send as the domain"),
    ]
    records += [
        Record(
            f"{row.selector}._domainkey.{zone}",
            "TXT",
            txt_value(dkim_keys.txt_record(row)),
            f"DKIM public key ({dkim_keys.SIGNATURE_ALGORITHMS[row.algorithm].decode()})",
        )
        for row in dkim
    ]
    records.append(Record(f"_dmarc.{zone}", "TXT", txt_value(dns.dmarc), "DMARC policy"))
    for name, purpose in (
        (f"openpgpkey.{zone}", "Web Key Directory (advanced method), served by the portal"),
        (f"autoconfig.{zone}", "mail client autoconfiguration, served by the portal"),
    ):
        record = _host_record(name, web_host(settings), purpose)
        if record is not None:
            records.append(record)
    records += [
        Record(f"_submission._tcp.{zone}", "SRV", _srv(settings, dns.submission_port),
               "RFC 6186: submission with STARTTLS"),
        Record(f"_submissions._tcp.{zone}", "SRV", _srv(settings, dns.submissions_port),
               "RFC 8314: submission with implicit TLS"),
        Record(f"_imaps._tcp.{zone}", "SRV", _srv(settings, dns.imaps_port),
               "RFC 6186: IMAP with implicit TLS"),
        Record(f"_imap._tcp.{zone}", "SRV", NOT_OFFERED, "RFC 6186: no IMAP without TLS"),
        Record(f"_pop3._tcp.{zone}", "SRV", NOT_OFFERED, "RFC 6186: no POP3"),
        Record(f"_pop3s._tcp.{zone}", "SRV", NOT_OFFERED, "RFC 6186: no POP3"),
    ]  # fmt: skip
    return records


def zone_text(records: list[Record], ttl: int) -> str:
    """Zone-file lines, each preceded by a comment saying what it is for."""
    width = max((len(r.name) for r in records), default=0)
    lines = []
    for record in records:
        lines.append(f"; {record.purpose}")
        lines.append(f"{record.name:<{width}} {ttl} IN {record.rtype:<5} {record.value}")
    return "\n".join(lines) + "\n"
