"""Reading stored mail: decrypted for its owner only, signature checked, attachments intact."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage

import pytest
import sqlalchemy as sa

from gateway import accounts, db, reading
from gateway.models import MailboxMessage
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer

ALICE, BOB = "alice@example.test", "bob@example.test"


def submit(server: SubmissionServer, ctx: ssl.SSLContext, pw: str, msg: EmailMessage) -> None:
    with smtplib.SMTP_SSL("127.0.0.1", server.tls_port, context=ctx, timeout=60) as client:
        client.login(ALICE, pw)
        client.send_message(msg)


def message(subject: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = ALICE, BOB, subject
    msg.set_content("Grüezi Bob\n")
    msg.add_alternative("<p>Grüezi <b>Bob</b></p>", subtype="html")
    msg.add_attachment(
        bytes(range(256)) * 10, maintype="application", subtype="pdf", filename="a.pdf"
    )
    return msg


def ids(runtime: Runtime, address: str) -> tuple[int, list[int]]:
    with db.read_only(runtime.sessions) as session:
        account = accounts.find_account(session, address)
        assert account is not None
        rows = session.scalars(
            sa.select(MailboxMessage.id)
            .join(MailboxMessage.address)
            .where(sa.text("addresses.address = :a"))
            .params(a=address)
            .order_by(MailboxMessage.id)
        ).all()
        return account.id, list(rows)


@pytest.mark.parametrize("subject", ["[encrypt] offer", "plain offer"])
def test_owner_reads_message_with_parts_and_signature(
    subject: str,
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    runtime: Runtime,
) -> None:
    submit(submission_server, client_ssl_context, mail_users[ALICE], message(subject))
    account_id, (message_id,) = ids(runtime, BOB)
    with db.read_only(runtime.sessions) as session:
        opened = reading.open_message(session, runtime.ring.get(), account_id, message_id)
    encrypted = subject.startswith("[encrypt]")
    assert opened.encrypted is encrypted
    assert opened.signature == ("valid" if encrypted else "not-encrypted")
    assert opened.text == "Grüezi Bob\n"
    assert opened.html is not None and "<b>Bob</b>" in opened.html
    (attachment,) = opened.attachments
    assert attachment.filename == "a.pdf" and attachment.data == bytes(range(256)) * 10
    assert opened.headers["Subject"] == "offer" if encrypted else "plain offer"


def test_other_accounts_cannot_open_it_and_delete_goes_through_trash(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    runtime: Runtime,
) -> None:
    submit(submission_server, client_ssl_context, mail_users[ALICE], message("[encrypt] x"))
    bob_id, (message_id,) = ids(runtime, BOB)
    alice_id, _ = ids(runtime, ALICE)
    with db.read_only(runtime.sessions) as session, pytest.raises(reading.MessageNotFound):
        reading.open_message(session, runtime.ring.get(), alice_id, message_id)
    with db.transaction(runtime.sessions) as session:
        reading.delete(session, bob_id, message_id)
    with db.transaction(runtime.sessions) as session:
        assert reading.owned_message(session, bob_id, message_id).folder == "Trash"
        reading.delete(session, bob_id, message_id)
    assert ids(runtime, BOB)[1] == []


def test_tampered_ciphertext_is_a_clear_error(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    runtime: Runtime,
) -> None:
    submit(submission_server, client_ssl_context, mail_users[ALICE], message("[encrypt] y"))
    bob_id, (message_id,) = ids(runtime, BOB)
    with db.transaction(runtime.sessions) as session:
        row = session.get(MailboxMessage, message_id)
        assert row is not None
        # In the encrypted data (near the end), not in another recipient's session key.
        start = row.raw.index(b"-----END PGP MESSAGE-----") - 100
        flipped = b"A" if row.raw[start : start + 1] != b"A" else b"B"
        row.raw = row.raw[:start] + flipped + row.raw[start + 1 :]
    with db.read_only(runtime.sessions) as session, pytest.raises(reading.CannotDecrypt):
        reading.open_message(session, runtime.ring.get(), bob_id, message_id)


def test_the_keystore_default_read_bounds_are_the_settings_defaults() -> None:
    """Readers that pass no settings (store.decrypt_for's defaults) are bounded the same."""
    from gateway.settings import LimitsSettings
    from keystore import untrusted

    assert reading.read_budget(LimitsSettings()) == untrusted.STORED_MESSAGE_BUDGET
    assert LimitsSettings().decrypt_max_bytes == untrusted.STORED_MESSAGE_MAX_OUTPUT
