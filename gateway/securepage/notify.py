"""The mails around a secure page: the recipient's notification and the sender's lock notice.

Names and subjects come from the submitted message, so they are attacker-chosen.
Before any of them goes into a header it is made one line of printable text:
control characters (CR, LF, NUL, U+2028 …) become spaces, format characters
(bidi overrides) go, and every `=?` is broken up. The last step matters on this
Python (3.11.7, CVE-2024-6923): the email package decodes an encoded word such as
`=?UTF-8?Q?=0A?=` found in a header value and, when it folds the header again,
writes the decoded newline out raw, so `=?UTF-8?Q?=0A?=Bcc: x@y` would add a Bcc
header. Text without `=?` holds no encoded word to decode.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import unicodedata
from email.headerregistry import Address

from gateway import mails, rawheaders
from gateway.securepage import links
from gateway.settings import Settings

MAX_NAME = 100
MAX_SUBJECT = 200
NOTIFICATION_TEMPLATE = "secure_notification"
LOCKED_TEMPLATE = "secure_locked"
_DATE_FORMATS = {
    "de": "%d.%m.%Y, %H:%M UTC",
    "fr": "%d/%m/%Y %H:%M UTC",
    "en": "%Y-%m-%d %H:%M UTC",
}


def one_line(text: str, limit: int) -> str:
    """`text` as one line of printable characters, safe inside any header."""
    out: list[str] = []
    for char in text:
        category = unicodedata.category(char)
        if category == "Cf":  # bidi overrides, zero-width characters
            continue
        if category == "Cs":  # undecodable bytes kept as surrogates
            char = "\ufffd"
        elif category in ("Cc", "Zl", "Zp", "Zs") or char.isspace():
            char = " "
        out.append(char)
    cleaned = " ".join("".join(out).split())
    while "=?" in cleaned:
        cleaned = cleaned.replace("=?", "= ?")
    return cleaned[:limit].strip()


def sender_name(raw: bytes, fallback: str) -> str:
    """The display name of the message's From, made safe; `fallback` when there is none."""
    name, _addr = email.utils.parseaddr(rawheaders.get(raw, "From") or "")
    return one_line(name, MAX_NAME) or fallback


def subject_of(raw: bytes) -> str:
    return one_line(rawheaders.get(raw, "Subject") or "", MAX_SUBJECT)


def format_when(when: dt.datetime, language: str) -> str:
    pattern = _DATE_FORMATS.get(mails.mail_language(language), _DATE_FORMATS["en"])
    return when.astimezone(dt.UTC).strftime(pattern)


def mailbox_header(name: str, address: str) -> str:
    """`"Name" <address>` with the name quoted as needed; the bare address if it will not go."""
    safe = one_line(name, MAX_NAME)
    try:
        return str(Address(display_name=safe, addr_spec=address)) if safe else address
    except (ValueError, IndexError):
        return address


def notification_sender(settings: Settings, sender_address: str) -> str:
    return settings.securepage.notification_from or sender_address


def build_notification(
    settings: Settings,
    *,
    name: str,
    sender_address: str,
    recipient: str,
    token: str,
    expires_at: dt.datetime,
    subject: str,
    language: str,
    now: dt.datetime,
) -> bytes:
    """The notification mail for one recipient: text + HTML, in the sender's language."""
    name = one_line(name, MAX_NAME) or sender_address
    subject = one_line(subject, MAX_SUBJECT) if settings.securepage.show_subject else ""
    base = settings.portal.base_url.rstrip("/")
    rendered = mails.render_mail(
        NOTIFICATION_TEMPLATE,
        language,
        {
            "sender_name": name,
            "sender_address": sender_address,
            "recipient": recipient,
            "url": links.page_url(base, token),
            "portal_url": base,
            "expires": format_when(expires_at, language),
            "subject": subject,
        },
    )
    from_address = notification_sender(settings, sender_address)
    extra = [] if from_address == sender_address else [("Reply-To", sender_address)]
    message = mails.build_message(
        sender=mailbox_header(name, from_address),
        recipient=recipient,
        mail=rendered,
        now=now,
        message_id_domain=settings.smtp.hostname,
        headers=extra,
    )
    return mails.to_bytes(message)


def build_lock_notice(
    settings: Settings,
    *,
    sender_address: str,
    recipient: str,
    subject: str,
    language: str,
    failures: int,
    now: dt.datetime,
) -> bytes:
    """The mail telling the sender a recipient's link locked after too many wrong passwords."""
    base = settings.portal.base_url.rstrip("/")
    rendered = mails.render_mail(
        LOCKED_TEMPLATE,
        language,
        {
            "recipient": recipient,
            "subject": one_line(subject, MAX_SUBJECT),
            "failures": failures,
            "when": format_when(now, language),
            "sent_url": f"{base}/secure/sent",
            "portal_url": base,
        },
    )
    from_address = settings.security.alert_sender or f"noreply@{settings.smtp.hostname}"
    message = mails.build_message(
        sender=from_address,
        recipient=sender_address,
        mail=rendered,
        now=now,
        message_id_domain=settings.smtp.hostname,
    )
    return mails.to_bytes(message)
