"""Bounces (RFC 3464): structure a mail client can read, and no way for a remote
server's reply text to inject a header or a MIME part into them."""

from __future__ import annotations

import datetime as dt
import email
import email.message
import re
from email.policy import default as default_policy

from hypothesis import given
from hypothesis import strategies as st

from gateway import dsn

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
ORIGINAL = (
    b"From: Alice <alice@example.test>\r\n"
    b"To: carol@elsewhere.test\r\n"
    b"Subject: the plan\r\n"
    b"\r\n"
    b"confidential body\r\n"
)


def build(original: bytes = ORIGINAL, **kw: object) -> bytes:
    args: dict[str, object] = {
        "original": original,
        "envelope_from": "alice@example.test",
        "recipient": "carol@elsewhere.test",
        "failure": dsn.smtp_failure(550, "5.1.1 No such user", remote_mta="relay.test"),
        "reporting_mta": "mail.example.test",
        "queue_id": "ABC123",
        "arrival_date": T0,
        "now": T0 + dt.timedelta(minutes=3),
    }
    args.update(kw)
    return dsn.build_bounce(**args)  # type: ignore[arg-type]


def parts(report: bytes) -> list[email.message.EmailMessage]:
    msg = email.message_from_bytes(report, policy=default_policy)
    assert isinstance(msg, email.message.EmailMessage)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert not msg.defects
    return list(msg.iter_parts())  # type: ignore[arg-type]


def test_bounce_is_a_well_formed_delivery_status_report() -> None:
    report = build()
    msg = email.message_from_bytes(report, policy=default_policy)
    assert msg["From"].addresses[0].addr_spec == "MAILER-DAEMON@mail.example.test"
    assert msg["To"].addresses[0].addr_spec == "alice@example.test"
    assert msg["Auto-Submitted"] == "auto-replied"
    human, status, headers = parts(report)
    assert human.get_content_type() == "text/plain"
    assert "could not be delivered to carol@elsewhere.test" in human.get_content()
    assert "refused it permanently" in human.get_content()
    assert status.get_content_type() == "message/delivery-status"
    per_message, per_recipient = status.get_payload()  # type: ignore[misc]
    assert per_message["Reporting-MTA"] == "dns; mail.example.test"
    assert per_message["Arrival-Date"] == "Mon, 02 Mar 2026 09:00:00 +0000"
    assert per_recipient["Final-Recipient"] == "rfc822; carol@elsewhere.test"
    assert per_recipient["Action"] == "failed"
    assert per_recipient["Status"] == "5.1.1"
    assert per_recipient["Remote-MTA"] == "dns; relay.test"
    assert per_recipient["Diagnostic-Code"] == "smtp; 550 5.1.1 No such user"
    assert headers.get_content_type() == "text/rfc822-headers"
    assert headers.get_content() == (
        "From: Alice <alice@example.test>\r\nTo: carol@elsewhere.test\r\nSubject: the plan\r\n"
    )
    assert b"confidential body" not in report
    assert all(line.endswith(b"\r") or not line for line in report.split(b"\n")[:-1])


def test_remote_reply_text_cannot_inject_headers_or_parts() -> None:
    evil = "5.1.1 nope\r\nX-Injected: yes\r\n\r\n--=_sealgate-dsn-x\r\nContent-Type: text/html\x00"
    report = build(failure=dsn.smtp_failure(550, evil))
    assert not any(line.startswith(b"X-Injected") for line in report.split(b"\r\n"))
    assert b"\x00" not in report
    _human, status, _headers = parts(report)
    _per_message, per_recipient = status.get_payload()  # type: ignore[misc]
    assert per_recipient["Diagnostic-Code"].startswith("smtp; 550 5.1.1 nope X-Injected: yes")


def test_status_comes_from_the_enhanced_code_when_it_is_permanent() -> None:
    assert dsn.smtp_failure(550, "5.7.1 relaying denied").status == "5.7.1"
    assert dsn.smtp_failure(550, "mailbox unavailable").status == "5.0.0"
    assert dsn.smtp_failure(554, "4.4.1 odd mix").status == "5.0.0"


def test_expiry_reports_4_4_7_with_the_last_error() -> None:
    smtp = dsn.expired_failure("451 4.3.0 try later")
    assert (smtp.status, smtp.diagnostic_type) == ("4.4.7", "smtp")
    ours = dsn.expired_failure("connection to relay r:25 failed: Connection refused")
    assert (ours.status, ours.diagnostic_type) == ("4.4.7", "X-Sealgate")
    human, _status, _headers = parts(build(failure=ours))
    assert "could not be delivered in time" in human.get_content()


def test_utf8_recipient_uses_the_utf8_address_type_in_its_7bit_form() -> None:
    """RFC 6533 3: in message/delivery-status, which is 7-bit, the utf-8 address type
    takes its xtext form; the address was written as raw UTF-8 under a 7-bit label."""
    report = build(recipient="jörg+x=y@exämple.test")
    _human, status, _headers = parts(report)
    _per_message, per_recipient = status.get_payload()  # type: ignore[misc]
    assert per_recipient["Final-Recipient"] == (
        "utf-8; j\\x{F6}rg\\x{2B}x\\x{3D}y@ex\\x{E4}mple.test"
    )
    start = report.index(b"Content-Type: message/delivery-status")
    end = report.index(b"Content-Type: text/rfc822-headers")
    assert report[start:end].isascii()


def test_header_block_stops_at_the_body_and_normalises_line_ends() -> None:
    assert dsn.header_block(b"A: 1\nB: 2\n\nbody\n") == b"A: 1\r\nB: 2\r\n"
    assert dsn.header_block(b"A: 1\r\n\r\nB: body\r\n") == b"A: 1\r\n"
    assert dsn.header_block(b"A: 1\r\n") == b"A: 1\r\n"
    huge = b"X: " + b"a" * (dsn.MAX_HEADER_BYTES * 2) + b"\r\n\r\nbody"
    assert len(dsn.header_block(huge)) <= dsn.MAX_HEADER_BYTES + 2


def test_eight_bit_original_headers_are_declared() -> None:
    report = build(original="Subject: Grüße\r\n\r\nx\r\n".encode())
    _human, _status, headers = parts(report)
    assert headers["Content-Transfer-Encoding"] == "8bit"


def test_header_block_ends_where_the_pipeline_ends_the_headers() -> None:
    """The bounce's header block is cut where the rest of the gateway (rawheaders) cuts
    it: at an empty line in any line-end style, or at the first line that is no field.
    It once looked for CRLF CRLF or LF LF only, and sent the sender's body back as
    "headers" for `...\\n\\r\\nbody` or a body that starts without an empty line."""
    assert dsn.header_block(b"A: 1\r\nB: 2\n\r\nbody text\r\n") == b"A: 1\r\nB: 2\r\n"
    assert dsn.header_block(b"A: 1\r\nB: 2\r\n\nbody text\r\n") == b"A: 1\r\nB: 2\r\n"
    assert dsn.header_block(b"A: 1\r\nno field here\r\nbody text\r\n") == b"A: 1\r\n"
    assert dsn.header_block(b"A: 1\r\n folded\r\n\r\nbody\r\n") == b"A: 1\r\n folded\r\n"
    report = build(original=b"From: a@example.test\r\nSubject: s\r\nsecret body line\r\n")
    assert b"secret body line" not in report


def test_the_human_part_says_who_gave_up() -> None:
    """Only a remote server's 5xx is "the receiving side refused it": an admin's give-up
    (after 451s) or the gateway's own reason once said so too."""
    given_up = dsn.Failure("5.0.0", "X-Sealgate", "delivery given up; last error: 451 later")
    human, _status, _headers = parts(build(failure=given_up))
    assert "refused" not in human.get_content()
    assert "has stopped trying" in human.get_content()
    assert "Reason: delivery given up; last error: 451 later" in human.get_content()
    remote, _status, _headers = parts(build())
    assert "The receiving side refused it permanently." in remote.get_content()


def test_remote_mta_is_a_host_name_or_an_address_literal() -> None:
    """RFC 3464 2.3.5: "dns" names a host; an IP address is no host name, so a relay
    configured by address is written as an RFC 5321 address literal."""
    assert (
        dsn.remote_mta_field("mx.example.test", "192.0.2.7") == "dns; mx.example.test (192.0.2.7)"
    )
    assert dsn.remote_mta_field("mx.example.test") == "dns; mx.example.test"
    assert dsn.remote_mta_field("192.0.2.7", "192.0.2.7") == "dns; [192.0.2.7]"
    assert dsn.remote_mta_field("2001:db8::1") == "dns; [IPv6:2001:db8::1]"
    assert dsn.remote_mta_field("[2001:db8::1]") == "dns; [IPv6:2001:db8::1]"
    assert dsn.remote_mta_field("mx.example.test", "x\r\nInjected: 1") == "dns; mx.example.test"


_ANY_DIGITS = st.text(st.characters(categories=["Nd"]), min_size=1, max_size=3)
_REPLIES = st.one_of(
    st.text(max_size=40),
    st.builds(lambda a, b, rest: f"5.{a}.{b} {rest}", _ANY_DIGITS, _ANY_DIGITS, st.text()),
)


@given(code=st.integers(500, 599), message=_REPLIES)
def test_the_status_of_any_permanent_reply_is_an_ascii_status_code(code: int, message: str) -> None:
    """RFC 3464 2.3.4 / RFC 3463: whatever a peer writes, Status is 5.d.d in ASCII."""
    failure = dsn.smtp_failure(code, message)
    assert re.fullmatch(r"5\.[0-9]{1,3}\.[0-9]{1,3}", failure.status)


@given(message_id=st.text(max_size=300))
def test_a_lost_original_gives_a_two_part_report_naming_what_is_known(message_id: str) -> None:
    """The gateway can no longer open the message (its master-key version is gone): no
    third part, the text says so, and whatever the noted Message-ID holds stays one line."""
    report = build(
        original=None,
        original_message_id=message_id,
        failure=dsn.expired_failure(
            "sealed at rest under master-key version 1, which was destroyed"
        ),
    )
    human, status = parts(report)
    assert status.get_content_type() == "message/delivery-status"
    per_message, per_recipient = status.get_payload()  # type: ignore[misc]
    assert per_message["X-Sealgate-Queue-ID"] == "ABC123"
    assert per_recipient["Status"] == "4.4.7"
    text = human.get_content().replace("\r\n", "\n")
    assert "Queue id: ABC123" in text and "Submitted: Mon, 02 Mar 2026 09:00:00 +0000" in text
    assert "neither\nits text nor its headers are attached" in text
    assert "The headers of your message are attached." not in text
    lines = text.splitlines()
    assert len(lines) == 11 + (1 if dsn.clean(message_id, 900) else 0)
    assert b"confidential" not in report and b"the plan" not in report
