"""Step `store-and-queue`: hosted copies into mailboxes, external ones into the outbound queue.

Runs inside the one transaction the whole submission commits in, so the `250`
is given only once every delivery is on disk, and a crash leaves all or nothing.
"""

from __future__ import annotations

import sqlalchemy.orm as so

from gateway import accounts, mailbox, queue
from gateway.pipeline.context import Submission
from gateway.pipeline.errors import RejectMessage
from gateway.smtp_codes import UNKNOWN_LOCAL_RECIPIENT


def store_and_queue(session: so.Session, submission: Submission) -> None:
    for rcpt in submission.hosted:
        address = accounts.find_address(session, rcpt)
        if address is None:
            raise RejectMessage(UNKNOWN_LOCAL_RECIPIENT.format(rcpt=rcpt))
        mailbox.store(
            session,
            address,
            submission.raw,
            queue_id=submission.queue_id,
            envelope_from=submission.envelope_from,
            now=submission.received_at,
        )
    for rcpt in submission.external:
        queue.enqueue(
            session,
            queue_id=submission.queue_id,
            mail_from=submission.envelope_from,
            rcpt_to=rcpt,
            raw=submission.raw,
            now=submission.received_at,
        )
