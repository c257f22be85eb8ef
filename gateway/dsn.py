"""Bounces as RFC 3464 delivery status notifications (multipart/report; delivery-status).

Built by hand rather than with `email.mime`: the standard library's handling of
message/delivery-status is quirky, and every byte here is either ours or
sanitised text from a remote server, which must never be able to add a header
line or a MIME boundary. Only the original's header block goes back to the
sender (as text/rfc822-headers), never its body; when the gateway can no longer
open its stored copy (sealed under a destroyed master-key version), the report
has no third part (RFC 3464 2.1 makes it optional) and says so.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import ipaddress
import re
import secrets
from dataclasses import dataclass

from gateway import rawheaders

MAX_HEADER_BYTES = 64 * 1024
MAX_DIAGNOSTIC_CHARS = 900

# ASCII digits only (RFC 3463); `\d` alone takes any script's digits from a peer's reply.
_ENHANCED_STATUS = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b", re.ASCII)
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class Failure:
    """Why a recipient failed, in DSN terms.

    `diagnostic_type` is "smtp" when `diagnostic` is a remote server's reply
    ("550 5.1.1 No such user"), else "X-Sealgate" for our own reason (RFC 3464
    allows X- types, as Postfix's "X-Postfix" does). `remote_mta` is the host we
    were sending to, as configured (a name or an IP address); `remote_address` the
    IP address that host had on the connection, when there was one.
    """

    status: str
    diagnostic_type: str
    diagnostic: str
    remote_mta: str = ""
    remote_address: str = ""


def smtp_failure(
    code: int, message: str, *, remote_mta: str = "", remote_address: str = ""
) -> Failure:
    """A permanent failure from a remote reply; the status is its enhanced code if it has one."""
    match = _ENHANCED_STATUS.match(message.strip())
    status = match.group(0) if match and match.group(1) == "5" else "5.0.0"
    return Failure(status, "smtp", f"{code} {message.strip()}", remote_mta, remote_address)


def expired_failure(last_error: str, *, remote_mta: str = "") -> Failure:
    """Gave up after the maximum age: 4.4.7 "delivery time expired" (RFC 3463)."""
    is_reply = re.match(r"^[2-5]\d\d[ -]", last_error, re.ASCII) is not None
    return Failure(
        "4.4.7",
        "smtp" if is_reply else "X-Sealgate",
        last_error or "delivery time expired",
        remote_mta,
    )


def clean(text: str, limit: int = MAX_DIAGNOSTIC_CHARS) -> str:
    """One printable ASCII line: remote text can neither add a header nor a part."""
    flat = _UNSAFE.sub(" ", text).encode("ascii", "replace").decode("ascii")
    return " ".join(flat.split())[:limit]


def remote_mta_field(host: str, address: str = "") -> str:
    """The Remote-MTA value: `dns; <host name>`, the connected address as a comment.

    RFC 3464 2.3.5 gives the "dns" type a host name. A host configured as an IP
    address has none, so it is written as an address literal (RFC 5321 4.1.3),
    the form a domain takes when only the address is known.
    """
    name = clean(host, 253).strip("[]")
    ip = _ip(name)
    if ip is not None:
        return f"dns; [IPv6:{ip.compressed}]" if ip.version == 6 else f"dns; [{ip.compressed}]"
    peer = _ip(clean(address, 64))
    return f"dns; {name} ({peer.compressed})" if peer is not None else f"dns; {name}"


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if text.lower().startswith("ipv6:"):
        text = text[5:]
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def _address_field(address: str) -> str:
    """An address for Final-Recipient: `rfc822`, or RFC 6533's `utf-8` type in its
    xtext form, since message/delivery-status is 7-bit (RFC 3464 2.1; IANA: "7bit
    ... MUST be used"): a non-ASCII character, "+", "=" or "\\" is written
    `\\x{HEX}`. The address went in as raw UTF-8, so the part held 8-bit bytes
    under a 7-bit label."""
    addr = _UNSAFE.sub("", address)
    if addr.isascii():
        return f"rfc822; {addr}"
    return "utf-8; " + "".join(
        f"\\x{{{ord(ch):02X}}}" if not ch.isascii() or ch in " +=\\" else ch for ch in addr
    )


def header_block(raw: bytes) -> bytes:
    """The original's header section, CRLF line ends, capped (never the body).

    Cut where the whole gateway cuts it (`rawheaders`): at the empty line in any
    line-end style, or at the first line that is not a header field.
    """
    head = rawheaders.header_block(raw)[:MAX_HEADER_BYTES]
    lines = head.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    return b"".join(line + b"\r\n" for line in lines if line)


def _why(failure: Failure) -> str:
    """One sentence for the human part: who stopped the delivery."""
    if failure.status.startswith("4."):
        return "It could not be delivered in time, so the gateway has stopped trying."
    if failure.diagnostic_type == "smtp":
        return "The receiving side refused it permanently."
    return "The gateway could not deliver it and has stopped trying (the reason is below)."


def build_bounce(
    *,
    original: bytes | None,
    envelope_from: str,
    recipient: str,
    failure: Failure,
    reporting_mta: str,
    queue_id: str,
    arrival_date: dt.datetime,
    now: dt.datetime,
    original_message_id: str = "",
) -> bytes:
    """The complete bounce message for one failed recipient, CRLF line ends.

    `original` None: the message's content is lost to the gateway, so nothing of
    it is attached; the report names what is known in clear instead (the queue
    id, when it was submitted, and `original_message_id` if one was noted).
    """
    mta = clean(reporting_mta, 253) or "localhost"
    rcpt = _UNSAFE.sub("", recipient)
    sender = _UNSAFE.sub("", envelope_from)
    diagnostic = clean(failure.diagnostic)
    headers = header_block(original) if original is not None else b""
    boundary = f"=_sealgate-dsn-{secrets.token_hex(12)}"
    while boundary.encode() in headers:  # pragma: no cover  (96 random bits)
        boundary = f"=_sealgate-dsn-{secrets.token_hex(12)}"

    human = [
        f"This is the mail gateway at {mta}.",
        "",
        f"Your message could not be delivered to {rcpt}.",
        _why(failure),
        "",
        f"Reason: {diagnostic}",
        f"Queue id: {clean(queue_id, 64)}",
    ]
    if original is not None:
        human += ["", "The headers of your message are attached."]
    else:
        human.append(f"Submitted: {email.utils.format_datetime(arrival_date)}")
        if message_id := clean(original_message_id, 900):
            human.append(f"Message-ID: {message_id}")
        human += [
            "",
            "The gateway can no longer open its stored copy of your message, so neither",
            "its text nor its headers are attached. Send it again if it still matters.",
        ]
    per_message = [
        f"Reporting-MTA: dns; {mta}",
        f"X-Sealgate-Queue-ID: {clean(queue_id, 64)}",
        f"Arrival-Date: {email.utils.format_datetime(arrival_date)}",
    ]
    per_recipient = [
        f"Final-Recipient: {_address_field(rcpt)}",
        "Action: failed",
        f"Status: {clean(failure.status, 16)}",
    ]
    if failure.remote_mta:
        per_recipient.append(
            f"Remote-MTA: {remote_mta_field(failure.remote_mta, failure.remote_address)}"
        )
    per_recipient += [
        f"Diagnostic-Code: {clean(failure.diagnostic_type, 32)}; {diagnostic}",
        f"Last-Attempt-Date: {email.utils.format_datetime(now)}",
    ]
    top = [
        f"From: Mail Delivery System <MAILER-DAEMON@{mta}>",
        f"To: <{sender}>",
        "Subject: Undelivered Mail Returned to Sender",
        f"Date: {email.utils.format_datetime(now)}",
        f"Message-ID: <{secrets.token_hex(16)}@{mta}>",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=delivery-status;",
        f'\tboundary="{boundary}"',
        "",
        "This is a MIME-encapsulated message.",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
        *human,
        "",
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "",
        *per_message,
        "",
        *per_recipient,
        "",
    ]
    if original is None:
        return "\r\n".join([*top, f"--{boundary}--", ""]).encode("utf-8")
    top += [
        f"--{boundary}",
        "Content-Type: text/rfc822-headers",
        "Content-Transfer-Encoding: " + ("7bit" if headers.isascii() else "8bit"),
        "",
    ]
    tail = ["", f"--{boundary}--", ""]
    return "\r\n".join(top).encode("utf-8") + b"\r\n" + headers + "\r\n".join(tail).encode("utf-8")
