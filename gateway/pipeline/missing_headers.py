"""Step `add-missing-headers`: From, Date and Message-ID for a submission that lacks them.

RFC 6409 §8 lets a submission server complete a message, and RFC 5322 requires
From and Date (and recommends Message-ID): without them recipients' programs
sort and thread the message wrongly, and some receivers refuse it. The step runs
before encryption, so an encrypted copy gets them where its outer-header logic
puts every other non-Content header. Fields are prepended, as trace fields are:
the header block is never re-serialised, so everything else stays byte for byte.

From is added only when there is none (the header check has passed then); it
names the authenticated envelope sender. The Message-ID's right side is the
sender's domain (RFC 5322 §3.6.4 wants it unique to the host), in IDNA form,
since a message id is ASCII.

A message that carries a DKIM-Signature gets no Date or Message-ID: its signer took
charge of its header, a field named in `h=` but absent was signed as absent
(RFC 6376 §5.4) so adding it breaks the signature, and signed mail is promised
to pass byte for byte.
"""

from __future__ import annotations

import email.utils
import secrets

from gateway import idn, rawheaders
from gateway.addresses import domain_of
from gateway.pipeline.context import Submission

STEP = "add-missing-headers"


def add_missing_headers(submission: Submission, *, hostname: str) -> None:
    fields = rawheaders.headers(submission.raw)
    present = {f.name.lower() for f in fields}
    added: list[bytes] = []
    if "from" not in present:
        # Even under a DKIM-Signature: one without From was never valid (RFC 6376 §5.4).
        added.append(f"From: <{submission.sender.address}>\r\n".encode())
    if "dkim-signature" in present:
        present |= {"date", "message-id"}
    if "date" not in present:
        stamp = email.utils.format_datetime(submission.received_at)
        added.append(f"Date: {stamp}\r\n".encode())
    if "message-id" not in present:
        domain = message_id_domain(submission.sender.address, fallback=hostname)
        added.append(f"Message-ID: <{secrets.token_hex(16)}@{domain}>\r\n".encode())
    if added:
        submission.raw = b"".join(added) + submission.raw


def message_id_domain(address: str, *, fallback: str) -> str:
    """The sender's domain as ASCII (IDNA); the server's name if it has no such form."""
    domain = domain_of(address)
    try:
        return idn.a_label(domain)
    except idn.InvalidDomainName:
        return fallback
