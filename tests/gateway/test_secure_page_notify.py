"""Notification mails cannot be made to carry extra headers, whatever the name or subject.

Threat: the sender's display name and the subject come from the submitted
message. A CR, LF or NUL in them, or an RFC 2047 encoded word that decodes to a
newline (`=?UTF-8?Q?=0A?=Bcc: x@y`: CVE-2024-6923, present in this machine's
Python 3.11.7, where the email package writes the decoded newline out when it
folds the header), would add a Bcc or any other header to a mail the gateway
sends in its own name. Each notification is built, its bytes parsed again, and
it must have exactly the expected headers.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import email
import email.policy
import sys
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pytest
import sqlalchemy as sa

from gateway import db
from gateway.models import Account
from gateway.pipeline import ClientInfo, Sender, Submission, submit
from gateway.runtime import Runtime
from gateway.securepage import links, notify
from gateway.settings import Settings
from tests.gateway.test_secure_page import queued

ALICE, CAROL = "alice@example.test", "carol@elsewhere.example"
NOW = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)
EXPECTED = ["From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted"]
MIME = ["MIME-Version", "Content-Type"]
B64_NEWLINE = base64.b64encode(b"\nBcc: x@y").decode()
HOSTILE = [
    "Eve\r\nBcc: x@y",
    "Eve\nBcc: x@y",
    "Eve\rBcc: x@y",
    "Eve\x00Bcc: x@y",
    "=?UTF-8?Q?=0A?=Bcc: x@y",
    "=?UTF-8?Q?=0D=0A?=Bcc: x@y",
    f"=?UTF-8?B?{B64_NEWLINE}?=",
    "=?UTF-8?Q?=3D=3FUTF-8=3FQ=3F=3D0A=3F=3D?=Bcc: x@y",  # an encoded word of an encoded word
    "Eve\u2028Bcc: x@y",
    "Eve\x85Bcc: x@y",
    '"Eve" <eve@evil.example>, Bcc: x@y',
    "Eve\u202e\u200bBcc: x@y",
    "Ünïcödé " * 40,
]


def header_names(raw: bytes) -> list[str]:
    """Header names as a strict line-based parser sees the bytes, and as the email package does."""
    block = raw.split(b"\r\n\r\n", 1)[0]
    names = [
        line.split(b":", 1)[0].decode()
        for line in block.split(b"\r\n")
        if line and line[:1] not in (b" ", b"\t")
    ]
    parsed = BytesParser(policy=email.policy.default).parsebytes(raw, headersonly=True)
    assert list(parsed.keys()) == names
    assert b"\n" not in block.replace(b"\r\n", b"") and b"\r" not in block.replace(b"\r\n", b"")
    return names


def bodies(raw: bytes) -> str:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return "\n".join(
        str(part.get_content()) for part in parsed.walk() if part.get_content_maintype() == "text"
    )


@pytest.fixture
def showing_subject(settings: Settings) -> Settings:
    return settings.replace(securepage={"show_subject": True})


@pytest.mark.parametrize("hostile", HOSTILE)
@pytest.mark.parametrize("language", ["en", "de", "fr"])
def test_hostile_names_and_subjects_add_no_header(
    hostile: str, language: str, showing_subject: Settings
) -> None:
    token = links.new_token()
    raw = notify.build_notification(
        showing_subject,
        name=hostile,
        sender_address=ALICE,
        recipient=CAROL,
        token=token,
        expires_at=NOW + dt.timedelta(days=30),
        subject=hostile,
        language=language,
        now=NOW,
    )
    assert header_names(raw) == EXPECTED + MIME
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["To"] == CAROL and parsed.get_all("Bcc") is None
    assert parsed["From"].addresses[0].addr_spec == ALICE
    assert len(parsed["From"].addresses) == 1
    subject = str(parsed["Subject"])
    assert "\n" not in subject and "\r" not in subject and "\x00" not in subject
    assert links.page_url(showing_subject.portal.base_url, token) in bodies(raw)


def test_the_subject_stays_out_unless_the_admin_allows_it(settings: Settings) -> None:
    common: dict[str, Any] = {
        "name": "Alice",
        "sender_address": ALICE,
        "recipient": CAROL,
        "token": links.new_token(),
        "expires_at": NOW,
        "subject": "Quarterly figures",
        "language": "en",
        "now": NOW,
    }
    hidden = email.message_from_bytes(notify.build_notification(settings, **common))
    assert hidden["Subject"] == "Alice sent you an encrypted message"
    assert b"Quarterly" not in notify.build_notification(settings, **common)
    shown = settings.replace(securepage={"show_subject": True})
    parsed = email.message_from_bytes(
        notify.build_notification(shown, **common), policy=email.policy.default
    )
    assert parsed["Subject"] == "Alice sent you an encrypted message: Quarterly figures"


def test_links_come_from_base_url_only(settings: Settings) -> None:
    configured = settings.replace(portal={"base_url": "https://secure.example.org/"})
    token = links.new_token()
    text = bodies(
        notify.build_notification(
            configured,
            name="Alice",
            sender_address=ALICE,
            recipient=CAROL,
            token=token,
            expires_at=NOW,
            subject="",
            language="en",
            now=NOW,
        )
    )
    assert f"https://secure.example.org/s/{token}" in text
    assert "localhost" not in text


@pytest.mark.skipif(sys.version_info >= (3, 11, 10), reason="CVE-2024-6923 fixed in this Python")
def test_the_naive_way_is_vulnerable_here() -> None:
    """The control: without the clean-up, this Python really writes an injected Bcc."""
    message = EmailMessage(policy=email.policy.default)
    message["Subject"] = "Encrypted message from x=?UTF-8?Q?=0D=0A?=Bcc: z@z"
    message.set_content("hi")
    assert "Bcc" in header_names(message.as_bytes(policy=email.policy.SMTP))


def test_end_to_end_through_the_pipeline(runtime: Runtime, mail_users: dict[str, str]) -> None:
    """The name and subject as a mail client would send them, raw, through `submit`."""
    shown = dataclasses.replace(
        runtime, settings=runtime.settings.replace(securepage={"show_subject": True})
    )
    raw = (
        # (a name showing another address is refused: tests/security/test_header_from_spoofing)
        f"From: =?UTF-8?Q?Eve=0D=0ABcc:_@y?= <{ALICE}>\r\n"
        f"To: {CAROL}\r\n"
        "Subject: =?UTF-8?Q?hi=0ABcc:_x@y?= =?UTF-8?B?"
        f"{B64_NEWLINE}?=\r\n"
        "X-Sealgate-Encrypt: yes\r\n"
        "X-Sealgate-Password: correct horse battery\r\n"
        "\r\nbody\r\n"
    ).encode()
    with db.read_only(runtime.sessions) as session:
        account_id = session.scalar(sa.select(Account.id).where(Account.email == ALICE))
    assert account_id is not None
    submit(
        shown,
        Submission(
            sender=Sender(account_id=account_id, address=ALICE),
            envelope_from=ALICE,
            recipients=[CAROL],
            raw=raw,
            client=ClientInfo(helo="test", ip="127.0.0.1", protocol="ESMTPSA"),
            received_at=NOW,
        ),
    )
    (item,) = queued(runtime)
    assert item.rcpt_to == CAROL
    assert header_names(item.raw) == EXPECTED + MIME
    parsed = email.message_from_bytes(item.raw, policy=email.policy.default)
    assert parsed.get_all("Bcc") is None
    # The mangled name is dropped for the sender's address; the subject is one line.
    assert str(parsed["Subject"]).strip() == (
        f"{ALICE} sent you an encrypted message: hi Bcc: x@y Bcc: x@y"
    )
