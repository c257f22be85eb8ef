"""Step `store-and-queue`: mailbox copies into mailboxes, relay copies into the outbound queue.

Runs inside the one transaction the whole submission commits in, so the `250`
is given only once every delivery is on disk, and a crash leaves all or nothing.
"""

from __future__ import annotations

from typing import Literal

import sqlalchemy.orm as so

from gateway import accounts, autoresponder, mailbox, queue
from gateway.admin import maillog
from gateway.pipeline.context import Copy, Handling, Submission
from gateway.pipeline.errors import RejectMessage
from gateway.smtp_codes import UNKNOWN_LOCAL_RECIPIENT


def plain_copies(submission: Submission, *, already_encrypted: bool = False) -> None:
    """Unencrypted mail: the same bytes for everyone, exactly as submitted (plus Received)."""
    method: Literal["passthrough", "plain"] = "passthrough" if already_encrypted else "plain"
    submission.handling.extend(Handling(r, method) for r in submission.hosted + submission.external)
    if submission.hosted:
        submission.copies.append(Copy("mailbox", list(submission.hosted), submission.raw))
    submission.copies.extend(Copy("queue", [r], submission.raw) for r in submission.external)


def store_and_queue(session: so.Session, submission: Submission) -> None:
    for copy in submission.copies:
        if copy.destination == "queue":
            for rcpt in copy.recipients:
                queue.enqueue(
                    session,
                    queue_id=submission.queue_id,
                    mail_from=submission.envelope_from,
                    rcpt_to=rcpt,
                    raw=copy.raw,
                    now=submission.received_at,
                    sealed=copy.sealed,
                )
            continue
        folder = mailbox.SENT if copy.destination == "sent" else mailbox.INBOX
        for rcpt in copy.recipients:
            address = accounts.find_address(session, rcpt)
            if address is None:
                raise RejectMessage(UNKNOWN_LOCAL_RECIPIENT.format(rcpt=rcpt))
            mailbox.store(
                session,
                address,
                copy.raw,
                queue_id=submission.queue_id,
                envelope_from=submission.envelope_from,
                now=submission.received_at,
                folder=folder,
                encrypted=copy.encrypted,
            )
            if folder == mailbox.INBOX:
                autoresponder.respond(
                    session,
                    address,
                    copy.raw,
                    envelope_from=submission.envelope_from,
                    now=submission.received_at,
                    queue_id=submission.queue_id,
                )
    for finish in submission.finalizers:
        finish(session)
    maillog.record_submission(session, submission)
