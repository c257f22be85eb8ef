"""Step `add-received`: one trace header (RFC 5321 §4.4), prepended to the submitted bytes."""

from __future__ import annotations

import email.utils

from gateway.pipeline.context import Submission


def add_received(submission: Submission, *, hostname: str) -> None:
    client = submission.client
    helo = _printable(client.helo) or "unknown"
    # Name the recipient only when there is one: several would disclose Bcc recipients.
    for_clause = (
        f"\r\n\tfor <{submission.recipients[0]}>" if len(submission.recipients) == 1 else ""
    )
    stamp = email.utils.format_datetime(submission.received_at)
    header = (
        f"Received: from {helo} ([{client.ip}])\r\n"
        f"\tby {hostname} (sealgate) with {client.protocol} id {submission.queue_id}"
        f"{for_clause};\r\n\t{stamp}\r\n"
    )
    submission.raw = header.encode("utf-8") + submission.raw


def _printable(value: str) -> str:
    """HELO is client-controlled: keep it to one token of visible ASCII."""
    cleaned = "".join(ch for ch in value if 33 <= ord(ch) <= 126 and ch not in "()[]")
    return cleaned[:255]
