"""Step `seal-for-secure-page`: external recipients without a key get a link, not the message.

The message (all of it but Bcc) is sealed once under the sender's password:
AES-256-GCM under a random message key, that key wrapped by Argon2id of the
password (gateway.securepage.crypto). The Argon2 run and the encryption happen
here, before the final transaction; the rows are added inside it by the
`store-and-queue` step through `submission.finalizers`.

The sender's Sent copy (the whole message, Bcc included) is sealed under the
same password and the same Argon2 run: encrypted to the sender's key it would
let database plus master key read the message (gateway.securepage.sent_copy).

Each recipient gets their own 256-bit link and a notification mail, queued for
the relay like any outbound copy but sealed at rest under the master key (it
holds the link). One password serves all of a message's
secure-page recipients; with none given, one is generated and reported to the
sender only (gateway.pipeline.report), never stored.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import string
from dataclasses import dataclass, field

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway import db, mails, queue
from gateway.models import Account
from gateway.pipeline.context import Copy, Handling, Submission
from gateway.pipeline.errors import RejectMessage
from gateway.runtime import Runtime
from gateway.securepage import crypto, links, notify, sent_copy, store
from gateway.settings import SecurePageSettings
from gateway.smtp_codes import (
    BAD_RECIPIENT_SYNTAX,
    OVERLONG_SECURE_PAGE_KEY,
    WEAK_SECURE_PAGE_KEY,
)

log = logging.getLogger(__name__)

# No look-alikes (0/O, 1/l/I): the sender may have to read it out on the phone.
PASSWORD_ALPHABET = "".join(c for c in string.ascii_letters + string.digits if c not in "0O1lI")


def generate_password(length: int) -> str:
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(length))


@dataclass(frozen=True)
class SecurePageResult:
    """What the delivery report tells the sender about the secure-page recipients."""

    recipients: tuple[str, ...]
    expires_at: dt.datetime
    generated_password: str | None = field(default=None, repr=False)


def seal_for_secure_page(
    runtime: Runtime,
    submission: Submission,
    recipients: list[str],
    *,
    page: SecurePageSettings | None = None,
) -> SecurePageResult:
    """Seal the message, make a link and a notification per recipient; rows go in later.

    `page` is the admin policy's lifetime and Argon2 cost (gateway.admin.policy).
    """
    settings = runtime.settings
    page = page or settings.securepage
    password = submission.password
    generated = None
    if password is None:
        password = generated = generate_password(page.generated_password_length)
    _check_password(password, page.min_password_length, settings.passwords.max_password_bytes)
    for rcpt in recipients:
        # "=?" is legal in a local part, but the email package would decode it in a header.
        if "=?" in rcpt or not rcpt.isprintable():
            raise RejectMessage(BAD_RECIPIENT_SYNTAX.format(rcpt=rcpt))

    now = submission.received_at
    expires_at = now + dt.timedelta(days=page.valid_days)
    public_id = store.new_public_id()
    kek = crypto.password_key(password, page)
    sealed = crypto.seal_with(store.page_content(submission.raw), kek, public_id=public_id)
    sent = sent_copy.build(
        submission.for_sender(submission.raw),
        kek,
        queue_id=submission.queue_id,
        sender=submission.sender.address,
    )
    submission.copies.append(Copy("sent", [submission.sender.address], sent, encrypted=True))

    with db.read_only(runtime.sessions) as session:
        language = session.scalar(
            sa.select(Account.language).where(Account.id == submission.sender.account_id)
        )
    language = mails.mail_language(language)
    name = notify.sender_name(submission.raw, submission.sender.address)
    subject = notify.subject_of(submission.raw)

    new_links = [store.NewLink(r, links.new_token(), expires_at) for r in recipients]
    ring = runtime.ring.get()
    for link in new_links:
        notification = notify.build_notification(
            settings,
            name=name,
            sender_address=submission.sender.address,
            recipient=link.recipient,
            token=link.token,
            expires_at=expires_at,
            subject=subject,
            language=language,
            now=now,
        )
        # The notification holds the link: sealed at rest until the relay sends it.
        sealed_notification = queue.seal_raw(
            ring, notification, queue_id=submission.queue_id, rcpt_to=link.recipient
        )
        submission.copies.append(Copy("queue", [link.recipient], sealed_notification, sealed=True))
        submission.handling.append(Handling(link.recipient, "secure-page"))
        log.info(
            "secure page for %s in %s: link %s",
            link.recipient,
            submission.queue_id,
            links.log_name(link.token),
        )

    def add_rows(session: so.Session) -> None:
        store.add_message(
            session,
            public_id=public_id,
            queue_id=submission.queue_id,
            account_id=submission.sender.account_id,
            sender_address=submission.sender.address,
            sealed=sealed,
            new_links=new_links,
            now=now,
        )

    submission.finalizers.append(add_rows)
    return SecurePageResult(tuple(recipients), expires_at, generated)


def _check_password(password: str, min_length: int, max_bytes: int) -> None:
    if len(password) < min_length:
        raise RejectMessage(WEAK_SECURE_PAGE_KEY.format(length=min_length))
    if len(password.encode("utf-8")) > max_bytes:
        raise RejectMessage(OVERLONG_SECURE_PAGE_KEY.format(limit=max_bytes))
