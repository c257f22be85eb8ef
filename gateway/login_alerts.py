"""Security alert mails: a login from a new device or place, and a failed login.

A "device" is the client's network prefix (/24 for IPv4, /48 for IPv6) together
with its browser family, remembered per account; a login from a pair not seen
before is new. That is coarse on purpose: a browser update or a new address
from the same provider does not alert, a new network or another browser does.

Alerts go to the account's address in the login's own transaction, never by SMTP
from inside a request: stored in its mailbox when the address is hosted here
(gateway.local_delivery), else queued for the relay. At most one mail of a
kind goes to an account per `[security] alert_interval`; the claim on that slot
is one conditional UPDATE (or an INSERT for the first), so two processes cannot
both send. Each kind can be switched off per account.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import secrets
from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa
import sqlalchemy.exc
import sqlalchemy.orm as so

from gateway import local_delivery, mails, purging, totp
from gateway.models import Account, AccountSecurity, AlertSent, KnownDevice
from gateway.settings import Settings

AlertKind = Literal["new_device", "failed_login"]
KINDS: tuple[AlertKind, ...] = ("new_device", "failed_login")
TEMPLATES: dict[AlertKind, str] = {
    "new_device": "login_new_device",
    "failed_login": "login_failed",
}

# Order matters: Edge and Opera say "Chrome" too, Chrome says "Safari".
_BROWSERS = (
    ("Edge", re.compile(r"\bEdg(?:e|A|iOS)?/")),
    ("Opera", re.compile(r"\b(?:OPR|Opera)/")),
    ("Samsung Internet", re.compile(r"\bSamsungBrowser/")),
    ("Firefox", re.compile(r"\b(?:Firefox|FxiOS)/")),
    ("Chrome", re.compile(r"\b(?:Chrome|Chromium|CriOS|HeadlessChrome)/")),
    ("Safari", re.compile(r"\bVersion/[\d.]+.*\bSafari/")),
)
_SYSTEMS = (
    ("Android", re.compile(r"\bAndroid\b")),
    ("iOS", re.compile(r"\b(?:iPhone|iPad|iPod)\b")),
    ("Windows", re.compile(r"\bWindows\b")),
    ("macOS", re.compile(r"\bMac OS X\b|\bMacintosh\b")),
    ("ChromeOS", re.compile(r"\bCrOS\b")),
    ("Linux", re.compile(r"\bLinux\b|\bX11\b")),
)
OTHER_BROWSER = "other"


def browser_family(user_agent: str) -> str:
    for name, pattern in _BROWSERS:
        if pattern.search(user_agent):
            return name
    return OTHER_BROWSER


def operating_system(user_agent: str) -> str:
    for name, pattern in _SYSTEMS:
        if pattern.search(user_agent):
            return name
    return ""


_AGENT_WORDS = {
    "en": ("unknown browser", "{browser} on {system}"),
    "de": ("unbekannter Browser", "{browser} unter {system}"),
    "fr": ("navigateur inconnu", "{browser} sur {system}"),
}


def describe_agent(user_agent: str, language: str = "en") -> str:
    """ "Firefox on Linux": what a person recognises, not the whole User-Agent string."""
    unknown, pattern = _AGENT_WORDS.get(language, _AGENT_WORDS["en"])
    family = browser_family(user_agent)
    system = operating_system(user_agent)
    name = unknown if family == OTHER_BROWSER else family
    return pattern.format(browser=name, system=system) if system else name


def network_prefix(ip: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) the address is in; "unknown" for anything else."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    bits = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{bits}", strict=False))


@dataclass(frozen=True)
class LoginContext:
    """Where a login came from, as the alert mail tells it."""

    ip: str
    user_agent: str
    at: dt.datetime
    # "portal", "SMTP" or "IMAP" (gateway.logins.PROTOCOLS): the mail says which way in.
    protocol: str = "portal"


_VIA_WORDS = {
    "en": {"portal": "the portal (web)", "mail": "a mail program ({protocol})"},
    "de": {"portal": "das Portal (Web)", "mail": "ein Mailprogramm ({protocol})"},
    "fr": {"portal": "le portail (web)", "mail": "un logiciel de messagerie ({protocol})"},
}


def describe_protocol(protocol: str, language: str = "en") -> str:
    """ "a mail program (IMAP)": which door the attempt came through, in the mail's language."""
    words = _VIA_WORDS.get(language, _VIA_WORDS["en"])
    if protocol == "portal":
        return words["portal"]
    return words["mail"].format(protocol=protocol)


def remember_device(
    session: so.Session, account_id: int, ip: str, user_agent: str, now: dt.datetime
) -> bool:
    """Note the device for the account; True when it had not been seen before."""
    network, family = network_prefix(ip), browser_family(user_agent)
    row = session.scalar(
        sa.select(KnownDevice).where(
            KnownDevice.account_id == account_id,
            KnownDevice.network == network,
            KnownDevice.browser == family,
        )
    )
    if row is not None:
        row.last_seen_at = now
        return False
    try:
        with session.begin_nested():
            session.add(
                KnownDevice(
                    account_id=account_id,
                    network=network,
                    browser=family,
                    first_seen_at=now,
                    last_seen_at=now,
                )
            )
    except sqlalchemy.exc.IntegrityError:
        return False  # the same device logged in twice at once: one of them alerts
    return True


def enabled(session: so.Session, account_id: int, kind: AlertKind) -> bool:
    column = (
        AccountSecurity.alert_new_device
        if kind == "new_device"
        else AccountSecurity.alert_failed_login
    )
    value = session.scalar(sa.select(column).where(AccountSecurity.account_id == account_id))
    return True if value is None else bool(value)


def claim_slot(
    session: so.Session, account_id: int, kind: AlertKind, now: dt.datetime, interval: dt.timedelta
) -> bool:
    """True if no alert of `kind` went to the account within `interval` (and claim it)."""
    result = session.execute(
        sa.update(AlertSent)
        .where(
            AlertSent.account_id == account_id,
            AlertSent.kind == kind,
            AlertSent.last_sent_at <= now - interval,
        )
        .values(last_sent_at=now)
        .execution_options(synchronize_session=False)
    )
    if int(getattr(result, "rowcount", 0)) == 1:
        return True
    exists = session.scalar(
        sa.select(AlertSent.last_sent_at).where(
            AlertSent.account_id == account_id, AlertSent.kind == kind
        )
    )
    if exists is not None:
        return False
    try:
        with session.begin_nested():
            session.add(AlertSent(account_id=account_id, kind=kind, last_sent_at=now))
    except sqlalchemy.exc.IntegrityError:
        return False
    return True


def sender_address(settings: Settings) -> str:
    return settings.security.alert_sender or f"noreply@{settings.smtp.hostname}"


def queue_alert(
    session: so.Session,
    settings: Settings,
    account: Account,
    kind: AlertKind,
    login: LoginContext,
    *,
    reason: str = "password",
) -> bool:
    """Queue the alert mail if the account wants it and the rate limit allows; True if queued."""
    if not enabled(session, account.id, kind):
        return False
    interval = dt.timedelta(seconds=settings.security.alert_interval)
    if not claim_slot(session, account.id, kind, login.at, interval):
        return False
    base = settings.portal.base_url.rstrip("/")
    language = mails.mail_language(account.language)
    context = {
        "email": account.email,
        "when": login.at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "ip": login.ip,
        "browser": describe_agent(login.user_agent, language),
        "reason": reason,
        "portal_url": base,
        "security_url": f"{base}/account/security",
        "activity_url": f"{base}/account/activity",
    }
    if kind == "failed_login":
        # A failure can come by any protocol (one lockout for all): name it.
        context["via"] = describe_protocol(login.protocol, language)
        context["protocol"] = login.protocol
    rendered = mails.render_mail(TEMPLATES[kind], language, context)
    sender = sender_address(settings)
    message = mails.build_message(
        sender=sender,
        recipient=account.email,
        mail=rendered,
        now=login.at,
        message_id_domain=settings.smtp.hostname,
    )
    # The account's own mailbox when it is hosted here: never out through the relay.
    local_delivery.deliver_generated(
        session,
        mails.to_bytes(message),
        sender=sender,
        recipient=account.email,
        queue_id=secrets.token_hex(8).upper(),
        now=login.at,
        account=account,
    )
    return True


def set_preferences(
    session: so.Session, account_id: int, *, new_device: bool, failed_login: bool
) -> None:
    row = totp.security_row(session, account_id)
    row.alert_new_device = new_device
    row.alert_failed_login = failed_login


def forget_devices_unseen_since(
    factory: so.sessionmaker[so.Session],
    cutoff: dt.datetime,
    batches: purging.Batches | None = None,
) -> int:
    """Forget devices not seen since `cutoff`, in short transactions (gateway.purging)."""
    return purging.delete_in_batches(factory, KnownDevice, unseen_since(cutoff), batches)


def unseen_since(cutoff: dt.datetime) -> sa.ColumnElement[bool]:
    """The devices `forget_devices_unseen_since` forgets."""
    return KnownDevice.last_seen_at < cutoff
