"""Step `delivery-report`: tell the sender how each recipient's copy went, when that varies.

A short mail goes straight into the sender's INBOX (in the message's own
transaction) when the recipients were handled in different ways, when the
gateway found a recipient's key by itself (from an Autocrypt header or by WKD:
the sender should learn which key their message was encrypted to, and where it
came from), or whenever the gateway made up a secure-page password: that
password reaches the sender here and nowhere else. The report is encrypted to
the sender's own key, so a generated password is never at rest in clear; but it
is hosted mail, which database plus master key open (README, "Trust model"): a
sender-chosen password is the one that only the sender and the recipients know.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway import db, mailbox, mails
from gateway.accounts import find_address
from gateway.models import Account
from gateway.pipeline import pgpmime
from gateway.pipeline.context import Handling, Submission
from gateway.pipeline.errors import RejectMessage
from gateway.pipeline.secure_page import SecurePageResult
from gateway.runtime import Runtime
from gateway.securepage import notify
from gateway.smtp_codes import UNKNOWN_LOCAL_RECIPIENT
from keystore import messages, pgp

TEMPLATE = "delivery_report"
# Key sources the gateway found by itself (the templates name each one).
DISCOVERED_SOURCES = ("autocrypt", "wkd")


def needs_report(handling: list[Handling], secure: SecurePageResult | None) -> bool:
    methods = {h.method for h in handling}
    discovered = any(h.method == "pgp" and h.key_source in DISCOVERED_SOURCES for h in handling)
    generated = secure is not None and secure.generated_password is not None
    return len(methods) > 1 or discovered or generated


def format_fingerprint(fingerprint: str) -> str:
    clean = fingerprint.replace(" ", "").upper()
    return " ".join(clean[i : i + 4] for i in range(0, len(clean), 4))


def add_delivery_report(
    runtime: Runtime,
    submission: Submission,
    sender_key: pgp.PublicKey,
    secure: SecurePageResult | None,
) -> None:
    """Build and encrypt the report now; store it in the final transaction."""
    if not needs_report(submission.handling, secure):
        return
    settings = runtime.settings
    now = submission.received_at
    with db.read_only(runtime.sessions) as session:
        language = mails.mail_language(
            session.scalar(
                sa.select(Account.language).where(Account.id == submission.sender.account_id)
            )
        )
    expires = notify.format_when(secure.expires_at, language) if secure else ""
    rows = [
        {
            "recipient": h.recipient,
            "method": h.method,
            "fingerprint": format_fingerprint(h.fingerprint) if h.fingerprint else "",
            "source": h.key_source,
            "expires": expires if h.method == "secure-page" else "",
        }
        for h in submission.handling
    ]
    base = settings.portal.base_url.rstrip("/")
    rendered = mails.render_mail(
        TEMPLATE,
        language,
        {
            "subject": notify.subject_of(submission.raw),
            "rows": rows,
            "password": secure.generated_password if secure else None,
            "sent_url": f"{base}/secure/sent",
            "queue_id": submission.queue_id,
        },
    )
    report = mails.to_bytes(
        mails.build_message(
            sender=settings.security.alert_sender or f"noreply@{settings.smtp.hostname}",
            recipient=submission.sender.address,
            mail=rendered,
            now=now,
            message_id_domain=settings.smtp.hostname,
        )
    )
    sealed = messages.encrypt(pgpmime.inner_entity(report), [sender_key], None)
    encrypted = pgpmime.build_encrypted(report, sealed)

    def store_report(session: so.Session) -> None:
        address = find_address(session, submission.sender.address)
        if address is None:
            raise RejectMessage(UNKNOWN_LOCAL_RECIPIENT.format(rcpt=submission.sender.address))
        mailbox.store(
            session,
            address,
            encrypted,
            queue_id=submission.queue_id,
            envelope_from="",
            now=now,
            encrypted=True,
        )

    submission.finalizers.append(store_report)
