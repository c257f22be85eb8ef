"""Step `add-received`: one trace header (RFC 5321 §4.4), prepended to the submitted bytes."""

from __future__ import annotations

import datetime as dt
import email.utils

from gateway.pipeline.context import ClientInfo, Submission


def add_received(submission: Submission, *, hostname: str) -> None:
    header = trace_header(
        submission.client,
        hostname=hostname,
        queue_id=submission.queue_id,
        recipients=submission.recipients,
        when=submission.received_at,
    )
    submission.raw = header + submission.raw


def trace_header(
    client: ClientInfo,
    *,
    hostname: str,
    queue_id: str,
    recipients: list[str],
    when: dt.datetime,
) -> bytes:
    helo = _printable(client.helo) or "unknown"
    # Name the recipient only when there is one: several would disclose Bcc recipients.
    for_clause = f"\r\n\tfor <{recipients[0]}>" if len(recipients) == 1 else ""
    stamp = email.utils.format_datetime(when)
    header = (
        f"Received: from {helo} ([{client.ip}])\r\n"
        f"\tby {hostname} (sealgate) with {client.protocol} id {queue_id}"
        f"{for_clause};\r\n\t{stamp}\r\n"
    )
    return header.encode("utf-8")


def _printable(value: str) -> str:
    """HELO is client-controlled: keep it to one token of visible ASCII."""
    cleaned = "".join(ch for ch in value if 33 <= ord(ch) <= 126 and ch not in "()[]")
    return cleaned[:255]
