"""The owner's download of an address's secret keys, locked with a passphrase they choose.

Mail programs (Thunderbird, gpg, OpenKeychain) read the PGP/MIME that IMAP
serves only with the address's secret key. The keys leave the server only
locked with the owner's passphrase (never unprotected), the event goes to the
audit log and the account's activity, and an alert mail announces it, so a
stolen session cannot take the keys unnoticed. The caller (the portal) has
checked a fresh login and, when 2FA is on, a current code.
"""

from __future__ import annotations

import datetime as dt
import secrets

import sqlalchemy.orm as so

from gateway import audit, login_alerts, mails
from gateway import queue as outbound
from gateway.models import Account, Address
from gateway.settings import Settings
from keystore import pgp, store
from keystore.masterkey import MasterKeyRing

MIN_PASSPHRASE_LENGTH = 10
MAX_PASSPHRASE_BYTES = 1024
ALERT_TEMPLATE = "secret_key_exported"


class ExportRefused(ValueError):
    """Why the keys were not exported; the text is safe to show."""


def check_passphrase(passphrase: str, repeated: str) -> str | None:
    """The problem with the chosen passphrase, or None."""
    if len(passphrase) < MIN_PASSPHRASE_LENGTH:
        return "short"
    if len(passphrase.encode("utf-8", "replace")) > MAX_PASSPHRASE_BYTES:
        return "long"
    if passphrase != repeated:
        return "mismatch"
    return None


def export_keys(
    session: so.Session,
    ring: MasterKeyRing,
    settings: Settings,
    account: Account,
    address: Address,
    passphrase: str,
    *,
    ip: str,
    user_agent: str,
    now: dt.datetime,
) -> str:
    """The address's secret keys (current first) as armored, passphrase-locked OpenPGP."""
    if address.account_id != account.id:
        raise ExportRefused("not an address of this account")
    keys = store.secret_keys_for_decryption(session, ring, address.address)
    if not keys:
        raise ExportRefused("this address has no key yet")
    armored = pgp.protected_export(keys, passphrase)
    audit.record(
        session,
        "key.export",
        actor=account.email,
        target=address.address,
        account_id=account.id,
        ip=ip,
        user_agent=user_agent,
        detail=", ".join(k.fingerprint for k in keys),
    )
    _alert(session, settings, account, address.address, ip, user_agent, now)
    return armored


def _alert(
    session: so.Session,
    settings: Settings,
    account: Account,
    address: str,
    ip: str,
    user_agent: str,
    now: dt.datetime,
) -> None:
    base = settings.portal.base_url.rstrip("/")
    language = mails.mail_language(account.language)
    rendered = mails.render_mail(
        ALERT_TEMPLATE,
        language,
        {
            "email": account.email,
            "address": address,
            "when": now.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "ip": ip,
            "browser": login_alerts.describe_agent(user_agent, language),
            "portal_url": base,
            "security_url": f"{base}/account/security",
            "activity_url": f"{base}/account/activity",
        },
    )
    sender = login_alerts.sender_address(settings)
    message = mails.build_message(
        sender=sender,
        recipient=account.email,
        mail=rendered,
        now=now,
        message_id_domain=settings.smtp.hostname,
    )
    outbound.enqueue(
        session,
        queue_id=secrets.token_hex(8).upper(),
        mail_from=sender,
        rcpt_to=account.email,
        raw=mails.to_bytes(message),
        now=now,
    )
