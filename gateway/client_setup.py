"""What a mail program needs to know to use a hosted address, in the formats programs read.

One description of the servers (names, ports, TLS, login) feeds three outputs:
the portal's "Set up a mail program" page, Thunderbird's autoconfig XML
(https://wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat) and
an Apple configuration profile (`.mobileconfig`, payload type
`com.apple.mail.managed`). Passwords are never part of any of them: the program
asks for the address password (or an app password with 2FA).
"""

from __future__ import annotations

import plistlib
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.settings import Settings

PROFILE_NAMESPACE = uuid.UUID("2f0b7d1e-7a55-4f43-9d1b-7c6a1e0c5a11")


@dataclass(frozen=True)
class Endpoint:
    protocol: str  # "imap" or "smtp"
    host: str
    port: int
    security: str  # "SSL" (implicit TLS) or "STARTTLS"


@dataclass(frozen=True)
class Servers:
    imap_tls: Endpoint
    imap_starttls: Endpoint
    smtp_tls: Endpoint
    smtp_starttls: Endpoint

    @property
    def all(self) -> tuple[Endpoint, ...]:
        return (self.imap_tls, self.imap_starttls, self.smtp_tls, self.smtp_starttls)


def servers(settings: Settings) -> Servers:
    smtp = settings.smtp
    imap_host = settings.imap.hostname or smtp.hostname
    return Servers(
        imap_tls=Endpoint("imap", imap_host, settings.imap.tls_port, "SSL"),
        imap_starttls=Endpoint("imap", imap_host, settings.imap.port, "STARTTLS"),
        smtp_tls=Endpoint("smtp", smtp.hostname, smtp.tls_port, "SSL"),
        smtp_starttls=Endpoint("smtp", smtp.hostname, smtp.submission_port, "STARTTLS"),
    )


def _text(parent: ET.Element, tag: str, text: str) -> None:
    ET.SubElement(parent, tag).text = text


def autoconfig_xml(settings: Settings, provider: str, domains: Sequence[str]) -> bytes:
    """Thunderbird's config-v1.1.xml for the hosted domains (implicit TLS listed first)."""
    root = ET.Element("clientConfig", version="1.1")
    provider_el = ET.SubElement(root, "emailProvider", id=provider)
    for domain in domains:
        _text(provider_el, "domain", domain)
    _text(provider_el, "displayName", f"sealgate ({provider})")
    _text(provider_el, "displayShortName", "sealgate")
    found = servers(settings)
    for endpoint in found.all:
        tag = "incomingServer" if endpoint.protocol == "imap" else "outgoingServer"
        server = ET.SubElement(provider_el, tag, type=endpoint.protocol)
        _text(server, "hostname", endpoint.host)
        _text(server, "port", str(endpoint.port))
        _text(server, "socketType", endpoint.security)
        _text(server, "authentication", "password-cleartext")
        _text(server, "username", "%EMAILADDRESS%")
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + bytes(ET.tostring(root, encoding="utf-8"))


def _uuid(*parts: str) -> str:
    """Stable per account and address, so installing the profile again replaces it."""
    return str(uuid.uuid5(PROFILE_NAMESPACE, "/".join(parts))).upper()


def mobileconfig(settings: Settings, account_email: str, addresses: Sequence[str]) -> bytes:
    """An Apple configuration profile with one IMAP + SMTP mail account per address."""
    found = servers(settings)
    identifier = ".".join(reversed(settings.smtp.hostname.split("."))) or "sealgate"
    payloads = []
    for address in addresses:
        payloads.append(
            {
                "PayloadType": "com.apple.mail.managed",
                "PayloadVersion": 1,
                "PayloadIdentifier": f"{identifier}.sealgate.mail.{_uuid(address)}",
                "PayloadUUID": _uuid("mail", address),
                "PayloadDisplayName": address,
                "EmailAccountDescription": address,
                "EmailAccountType": "EmailTypeIMAP",
                "EmailAddress": address,
                "IncomingMailServerHostName": found.imap_tls.host,
                "IncomingMailServerPortNumber": found.imap_tls.port,
                "IncomingMailServerUseSSL": True,
                "IncomingMailServerAuthentication": "EmailAuthPassword",
                "IncomingMailServerUsername": address,
                "OutgoingMailServerHostName": found.smtp_tls.host,
                "OutgoingMailServerPortNumber": found.smtp_tls.port,
                "OutgoingMailServerUseSSL": True,
                "OutgoingMailServerAuthentication": "EmailAuthPassword",
                "OutgoingMailServerUsername": address,
                "OutgoingPasswordSameAsIncomingPassword": True,
            }
        )
    profile = {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{identifier}.sealgate.{_uuid(account_email)}",
        "PayloadUUID": _uuid("profile", account_email),
        "PayloadDisplayName": f"Mail ({account_email})",
        "PayloadDescription": "IMAP and SMTP for your sealgate addresses.",
        "PayloadOrganization": settings.smtp.hostname,
        "PayloadRemovalDisallowed": False,
        "PayloadContent": payloads,
    }
    return plistlib.dumps(profile, fmt=plistlib.FMT_XML)
