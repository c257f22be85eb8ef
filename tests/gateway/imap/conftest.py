"""Helpers for the IMAP tests: mail put straight into a mailbox, as the pipeline stores it."""

from __future__ import annotations

import sqlalchemy as sa

from gateway import accounts, db, mailbox
from gateway.models import MailboxMessage
from gateway.runtime import Runtime
from gateway.timeutil import utcnow

ALICE, BOB = "alice@example.test", "bob@example.test"


def plain(subject: str, body: str = "Hello there.", message_id: str = "") -> bytes:
    mid = message_id or f"<{abs(hash(subject))}@example.test>"
    return (
        f"From: Bob <{BOB}>\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
        f"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: {mid}\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


def deliver(runtime: Runtime, address: str, raw: bytes, folder: str = "INBOX") -> int:
    """Store a message as the pipeline does; its new UID."""
    with db.transaction(runtime.sessions) as session:
        row = accounts.find_address(session, address)
        assert row is not None
        message = mailbox.store(
            session, row, raw, queue_id="T1", envelope_from=BOB, now=utcnow(), folder=folder
        )
        session.flush()
        assert message.uid is not None
        return message.uid


def rows(runtime: Runtime, address: str, folder: str) -> list[MailboxMessage]:
    with db.read_only(runtime.sessions) as session:
        return list(
            session.scalars(
                sa.select(MailboxMessage)
                .join(MailboxMessage.address)
                .where(sa.text("addresses.address = :a"), MailboxMessage.folder == folder)
                .params(a=address)
                .order_by(MailboxMessage.uid)
            )
        )
