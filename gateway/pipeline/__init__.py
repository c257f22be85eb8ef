"""The submission pipeline: the one path every message takes, from SMTP or from the webmail.

Read top to bottom, it is the flow in DESIGN.md:

    normalize-header-line-ends → check-structure → check-header-sender
    → classify-recipients → decide-encryption (strips control headers)
    → add-missing-headers → add-received
    → check-already-encrypted (pass-through by structure)
    → [encrypted: resolve-keys → encrypt-pgp
    → seal-for-secure-page → delivery-report | plain copies] → describe-copies
    → store-and-queue → commit

`submit` is `prepare` (every step up to the store, CPU work and reads only) then
`groupcommit.commit` (store-and-queue in a transaction shared with the messages
finishing at the same moment; each again alone if the group fails). The SMTP server's
worker processes (gateway.workers) call the same two halves.

Each step is a small function in its own module taking the `Submission` context.
Steps refuse a message by raising `RejectMessage(status)`; the caller turns that
into an SMTP reply (or a webmail error). Everything the message produces is
committed in one transaction, and only then does `submit` return the queue id.
Plaintext of a message to be encrypted lives only in memory until it is
encrypted: no step writes it anywhere.
"""

from __future__ import annotations

import logging
import time

from gateway import groupcommit, lookups, metrics, rawheaders
from gateway.mail import header_line_ends
from gateway.pipeline.classify import classify_recipients
from gateway.pipeline.context import ClientInfo, Copy, Sender, Submission
from gateway.pipeline.deliver import describe_copies, plain_copies
from gateway.pipeline.encrypt import encrypt_copies
from gateway.pipeline.errors import RejectMessage
from gateway.pipeline.external_keys import lookup_external_keys
from gateway.pipeline.header_sender import check_header_sender
from gateway.pipeline.keys import resolve_keys, trigger_inputs
from gateway.pipeline.missing_headers import add_missing_headers
from gateway.pipeline.passthrough import is_already_encrypted
from gateway.pipeline.received import add_received
from gateway.pipeline.report import add_delivery_report
from gateway.pipeline.secure_page import seal_for_secure_page
from gateway.pipeline.structure import check_structure
from gateway.pipeline.triggers import decide_encryption
from gateway.runtime import Runtime

__all__ = [
    "ClientInfo",
    "Copy",
    "RejectMessage",
    "Sender",
    "Submission",
    "log_queued",
    "prepare",
    "submit",
]

log = logging.getLogger(__name__)


def submit(runtime: Runtime, submission: Submission) -> str:
    """Run every step and commit; returns the queue id. Blocking: call it off the event loop."""
    started = time.monotonic()
    prepare(runtime, submission)
    groupcommit.commit(runtime, submission)
    log_queued(submission)
    metrics.record_submission(submission, time.monotonic() - started)
    return submission.queue_id


def prepare(runtime: Runtime, submission: Submission) -> None:
    """Every step up to store-and-queue: after it, `submission.copies` (and its
    finalizers) hold all that the one transaction will write."""
    try:
        _prepare(runtime, submission)
    finally:
        rawheaders.forget_cached()  # the steps' shared header split ends with the message


def _prepare(runtime: Runtime, submission: Submission) -> None:
    settings = runtime.settings
    # Before any step reads a header: they, the mailbox and the relay then read it alike.
    submission.raw = header_line_ends.normalize(submission.raw)
    check_structure(
        submission.raw,
        max_depth=settings.smtp.max_mime_depth,
        max_parts=settings.smtp.max_mime_parts,
    )
    # Answers that are the same for every message come from short-lived caches (gateway.lookups).
    with lookups.reader(runtime.sessions) as known:
        owned = known.sender(submission.sender.account_id).owned
        check_header_sender(submission, owned)
        always_encrypt, rule_domains = trigger_inputs(known, submission.sender.account_id)
        policy = known.policy(settings)
        classify_recipients(known, submission)
    decide_encryption(
        submission,
        subject_tag=policy.subject_tag,
        always_encrypt=always_encrypt,
        rule_domains=rule_domains,
    )
    add_missing_headers(submission, hostname=settings.smtp.hostname)
    add_received(submission, hostname=settings.smtp.hostname)

    # By structure alone: a quoted armor or a declared but fake type is encrypted as any text.
    already_encrypted = is_already_encrypted(submission.raw)
    if submission.encrypt and not already_encrypted:
        external = lookup_external_keys(runtime, submission.external, submission.received_at)
        missing = [r for r in submission.external if r not in external]
        keys, sender_keys = resolve_keys(runtime, submission, external)
        # The secure page (recipients without a key) still needs the text.
        encrypt_copies(
            submission, keys, sender_keys, sent_copy=not missing, forget_plaintext=not missing
        )
        # Recipients without a key get a link to a password-protected page, never clear text.
        secure = (
            seal_for_secure_page(
                runtime, submission, missing, page=policy.securepage(settings.securepage)
            )
            if missing
            else None
        )
        add_delivery_report(runtime, submission, sender_keys.public, secure)
        submission.forget_plaintext()
    else:
        plain_copies(submission, already_encrypted=already_encrypted)

    describe_copies(submission)  # header parsing, before the writer lock


def log_queued(submission: Submission) -> None:
    log.info(
        "queued %s from %s: %d hosted, %d external, %s, %d bytes",
        submission.queue_id,
        submission.sender.address,
        len(submission.hosted),
        len(submission.external),
        "encrypted" if any(c.encrypted for c in submission.copies) else "plain",
        submission.size,
    )
