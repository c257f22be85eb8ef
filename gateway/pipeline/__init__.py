"""The submission pipeline: the one path every message takes, from SMTP or from the webmail.

Read top to bottom, it is the flow in DESIGN.md:

    check-structure → add-received → classify-recipients → store-and-queue → commit

Each step is a small function in its own module taking the `Submission` context.
Steps refuse a message by raising `RejectMessage(status)`; the caller turns that
into an SMTP reply (or a webmail error). Everything the message produces is
committed in one transaction, and only then does `submit` return the queue id.
"""

from __future__ import annotations

import logging

from gateway import db
from gateway.pipeline.classify import classify_recipients
from gateway.pipeline.context import ClientInfo, Sender, Submission
from gateway.pipeline.deliver import store_and_queue
from gateway.pipeline.errors import RejectMessage
from gateway.pipeline.received import add_received
from gateway.pipeline.structure import check_structure
from gateway.runtime import Runtime

__all__ = ["ClientInfo", "RejectMessage", "Sender", "Submission", "submit"]

log = logging.getLogger(__name__)


def submit(runtime: Runtime, submission: Submission) -> str:
    """Run every step and commit; returns the queue id. Blocking: call it off the event loop."""
    smtp = runtime.settings.smtp
    check_structure(submission.raw, max_depth=smtp.max_mime_depth, max_parts=smtp.max_mime_parts)
    add_received(submission, hostname=smtp.hostname)
    with db.transaction(runtime.sessions) as session:
        classify_recipients(session, submission)
        store_and_queue(session, submission)
    log.info(
        "queued %s from %s: %d hosted, %d external, %d bytes",
        submission.queue_id,
        submission.sender.address,
        len(submission.hosted),
        len(submission.external),
        len(submission.raw),
    )
    return submission.queue_id
