"""A recipient's answer from the secure page, as the MIME message the sender receives.

Threat: the browser (or anyone posting the form) declares each file's type. A file
declared `message/rfc822`, `message/partial` or `multipart/mixed` was attached under
that type with a base64 body, which RFC 2045/2046 forbid for those types: readers
take such a part as an embedded message or a multipart without boundary, and the
sender's webmail offered the file as an empty download (the answer's file was lost).
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy

import pytest

from gateway.securepage import content
from gateway.securepage.reply import ReplyFile, build_reply
from gateway.settings import SecurePageSettings

DATA = b"Subject: inner\r\n\r\nsigned contract <b>x</b>\r\n\x00\xff"


def answer_with(file: ReplyFile) -> email.message.EmailMessage:
    raw = build_reply(
        recipient="carol@partner.example",
        sender_address="alice@example.test",
        original=content.parse(b"Subject: Vertrag\r\n\r\nbody\r\n"),
        text="attached",
        files=[file],
        now=dt.datetime(2026, 12, 6, tzinfo=dt.UTC),
        hostname="mail.example.test",
        settings=SecurePageSettings(),
    )
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


@pytest.mark.parametrize(
    "declared",
    [
        "message/rfc822",
        "message/partial",
        "message/external-body",
        "message/global",
        "multipart/mixed",
        "multipart/alternative",
        "MESSAGE/RFC822",
    ],
)
def test_a_file_declared_as_a_message_or_multipart_arrives_as_its_bytes(declared: str) -> None:
    answer = answer_with(ReplyFile("reply.eml", declared, DATA))
    (attached,) = list(answer.iter_attachments())
    assert attached.get_content_type() == "application/octet-stream"
    assert not attached.is_multipart()
    assert attached.get_filename() == "reply.eml"
    assert attached.get_payload(decode=True) == DATA


@pytest.mark.parametrize(
    ("declared", "kept"),
    [
        ("application/pdf", "application/pdf"),
        ("text/plain", "text/plain"),
        ("image/png", "image/png"),
        ("", "application/octet-stream"),
        ("not a type", "application/octet-stream"),
    ],
)
def test_other_declared_types_are_kept(declared: str, kept: str) -> None:
    answer = answer_with(ReplyFile("file.bin", declared, DATA))
    (attached,) = list(answer.iter_attachments())
    assert attached.get_content_type() == kept
    assert attached.get_payload(decode=True) == DATA
