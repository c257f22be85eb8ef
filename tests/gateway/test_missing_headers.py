"""Step `add-missing-headers`: a submission without Date or Message-ID (or From) is
completed (RFC 6409 §8) before encryption, over real SMTP under TLS, and a message
that has them keeps them as they were."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import email.utils
import re
import smtplib
import ssl
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from gateway import db
from gateway.models import MailboxMessage, QueueItem
from gateway.pipeline.context import ClientInfo, Sender, Submission
from gateway.pipeline.missing_headers import add_missing_headers, message_id_domain
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer
from tests.conftest import LoopThread

ALICE, BOB = "alice@example.test", "bob@example.test"
CAROL = "carol@elsewhere.example"
NOW = dt.datetime(2026, 12, 2, 9, 30, 15, tzinfo=dt.UTC)
OUR_ID = re.compile(r"<[0-9a-f]{32}@example\.test>")


@pytest.fixture
def server(runtime: Runtime, loop_thread: LoopThread) -> Iterator[SubmissionServer]:
    """The real submission server with a clock that says NOW."""
    started = SubmissionServer(runtime, clock=lambda: NOW)
    loop_thread.run(started.start())
    yield started
    loop_thread.run(started.stop(grace=5))


def _send(
    server: SubmissionServer, ctx: ssl.SSLContext, pw: str, raw: bytes, to: list[str]
) -> None:
    with smtplib.SMTP_SSL("127.0.0.1", server.tls_port, context=ctx, timeout=60) as client:
        client.login(ALICE, pw)
        assert client.sendmail(ALICE, to, raw) == {}


def _copies(runtime: Runtime) -> list[bytes]:
    with db.read_only(runtime.sessions) as session:
        stored = [m.raw for m in session.scalars(sa.select(MailboxMessage))]
        queued = [q.raw for q in session.scalars(sa.select(QueueItem))]
    return stored + queued


def _parsed(raw: bytes) -> email.message.EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def test_plain_submission_without_date_and_message_id_gets_both(
    server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    runtime: Runtime,
) -> None:
    raw = f"From: {ALICE}\r\nTo: {BOB}, {CAROL}\r\nSubject: bare\r\n\r\nbody\r\n".encode()
    _send(server, client_ssl_context, mail_users[ALICE], raw, [BOB, CAROL])
    copies = _copies(runtime)
    assert len(copies) == 2  # Bob's mailbox, the queue for Carol
    ids = set()
    for copy in copies:
        message = _parsed(copy)
        assert len(message.get_all("Date") or []) == 1
        assert email.utils.parsedate_to_datetime(str(message["Date"])) == NOW
        assert len(message.get_all("Message-ID") or []) == 1
        assert OUR_ID.fullmatch(str(message["Message-ID"]).strip())
        ids.add(str(message["Message-ID"]))
        assert copy.endswith(raw)  # the submitted bytes follow, unchanged
    assert len(ids) == 1  # one message, one id, in every copy


def test_encrypted_submission_gets_them_outside_the_ciphertext(
    server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    runtime: Runtime,
) -> None:
    """Added before encryption: the encrypted copies carry them where the outer-header logic
    puts every non-Content field, in clear, as mail clients need for sorting and threading."""
    raw = (
        f"To: {BOB}\r\nSubject: sealed\r\nX-Sealgate-Encrypt: yes\r\n\r\nsecret words\r\n"
    ).encode()
    _send(server, client_ssl_context, mail_users[ALICE], raw, [BOB])
    with db.read_only(runtime.sessions) as session:
        rows = list(session.scalars(sa.select(MailboxMessage).order_by(MailboxMessage.folder)))
    assert [r.folder for r in rows] == ["INBOX", "Sent"]
    ids = set()
    for row in rows:
        assert row.encrypted and b"secret words" not in row.raw
        message = _parsed(row.raw)
        assert message.get_content_type() == "multipart/encrypted"
        assert str(message["From"]) == ALICE  # no From: the envelope sender
        assert email.utils.parsedate_to_datetime(str(message["Date"])) == NOW
        assert OUR_ID.fullmatch(str(message["Message-ID"]).strip())
        ids.add(str(message["Message-ID"]))
    assert len(ids) == 1


def test_present_date_and_message_id_are_kept(
    server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    runtime: Runtime,
) -> None:
    raw = (
        f"From: {ALICE}\r\nTo: {BOB}\r\nSubject: complete\r\n"
        "date: Fri, 27 Nov 2026 10:00:00 +0100\r\nMESSAGE-ID: <mine.1@client.example>\r\n"
        "\r\nbody\r\n"
    ).encode()
    _send(server, client_ssl_context, mail_users[ALICE], raw, [BOB])
    (copy,) = _copies(runtime)
    message = _parsed(copy)
    assert message.get_all("Date") == ["Fri, 27 Nov 2026 10:00:00 +0100"]
    assert message.get_all("Message-ID") == ["<mine.1@client.example>"]
    assert copy.endswith(raw)


def _submission(raw: bytes, sender: str = ALICE) -> Submission:
    return Submission(
        sender=Sender(account_id=1, address=sender),
        envelope_from=sender,
        recipients=[BOB],
        raw=raw,
        client=ClientInfo(helo="t", ip="127.0.0.1", protocol="ESMTPSA"),
        received_at=NOW,
    )


def test_dkim_signed_message_gets_no_date_or_message_id_but_a_missing_from() -> None:
    """A DKIM signer may have signed the absence of Date (RFC 6376 §5.4): nothing is added
    that could break it; a From is, since a signature without one never verified."""
    raw = b"DKIM-Signature: v=1; h=from:date:message-id; b=x\r\nSubject: s\r\n\r\nbody\r\n"
    submission = _submission(raw)
    add_missing_headers(submission, hostname="mx.example.test")
    assert submission.raw == f"From: <{ALICE}>\r\n".encode() + raw


def test_message_id_uses_the_ascii_form_of_an_international_domain() -> None:
    assert message_id_domain("jo@bücher.example", fallback="h") == "xn--bcher-kva.example"
    assert message_id_domain("jo@example.test", fallback="h") == "example.test"
    assert message_id_domain("jo@" + "a" * 70 + ".example", fallback="mx.h") == "mx.h"
    submission = _submission(b"Subject: s\r\n\r\nbody\r\n", sender="jö@bücher.example")
    add_missing_headers(submission, hostname="mx.example.test")
    message = _parsed(submission.raw)
    assert str(message["Message-ID"]).endswith("@xn--bcher-kva.example>")
    assert submission.raw.split(b"\r\n\r\n")[0].count(b"Message-ID:") == 1
