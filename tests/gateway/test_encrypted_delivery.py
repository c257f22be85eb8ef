"""Encrypted delivery over real SMTP: triggers, PGP/MIME to hosted recipients, Bcc isolation."""

from __future__ import annotations

import email
import email.policy
import smtplib
import ssl
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway import db, queue, rawheaders
from gateway.models import Account, EncryptionRule, MailboxMessage, QueueItem
from gateway.pipeline import pgpmime
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer
from keystore import store
from tests.gnupg import GnuPG

ALICE, BOB = "alice@example.test", "bob@example.test"


@pytest.fixture
def gpg(tmp_path: Path) -> Iterator[GnuPG]:
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    yield GnuPG(home)


def rich_message(subject: str = "Grüsse aus Zürich – Überweisung") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = ALICE
    msg["To"] = BOB
    msg["Subject"] = subject
    msg["Message-ID"] = "<rich-1@example.test>"
    msg.set_content("Hallo Bob,\nanbei die Rechnung. Grüsse, Alice\n")
    msg.add_alternative("<p>Hallo <b>Bob</b>, anbei die Rechnung.</p>", subtype="html")
    pdf = b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"
    msg.add_attachment(pdf, maintype="application", subtype="pdf", filename="rechnung.pdf")
    return msg


def submit(
    server: SubmissionServer,
    ctx: ssl.SSLContext,
    password: str,
    raw: bytes,
    rcpts: list[str],
    sender: str = ALICE,
) -> str:
    with smtplib.SMTP_SSL("127.0.0.1", server.tls_port, context=ctx, timeout=60) as client:
        client.login(sender, password)
        client.mail(sender, ["SMTPUTF8", "BODY=8BITMIME"])
        for rcpt in rcpts:
            assert client.rcpt(rcpt)[0] == 250
        code, reply = client.data(raw)
        assert code == 250, reply
        return reply.decode().rsplit(" ", 1)[1]


def mailbox(runtime: Runtime, address: str, folder: str = "INBOX") -> list[MailboxMessage]:
    with db.transaction(runtime.sessions) as session:
        return list(
            session.scalars(
                sa.select(MailboxMessage)
                .join(MailboxMessage.address)
                .where(sa.text("addresses.address = :a"), MailboxMessage.folder == folder)
                .params(a=address)
                .order_by(MailboxMessage.id)
            )
        )


def export_secret(runtime: Runtime, address: str) -> bytes:
    from keystore import pgp

    with db.transaction(runtime.sessions) as session:
        keys = store.secret_keys_for_decryption(session, runtime.ring.get(), address)
    return b"".join(pgp.secret_key_bytes(k) for k in keys)


def gpg_decrypt(gpg: GnuPG, raw: bytes) -> tuple[bytes, str]:
    armored = pgpmime.encrypted_payload(raw)
    assert armored is not None
    result = gpg.run("--status-fd", "2", "--decrypt", input=armored)
    return result.stdout, result.stderr.decode(errors="replace")


def test_subject_tag_encrypts_to_hosted_recipient_and_gpg_recovers_the_mime_tree(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    runtime: Runtime,
    gpg: GnuPG,
) -> None:
    original = rich_message("[Encrypt] Grüsse aus Zürich")
    raw = original.as_bytes(policy=email.policy.SMTP)
    submit(submission_server, client_ssl_context, mail_users[ALICE], raw, [BOB])

    (stored,) = mailbox(runtime, BOB)
    assert stored.encrypted
    assert stored.subject == "Grüsse aus Zürich"  # tag removed, subject kept in clear
    outer = email.message_from_bytes(stored.raw, policy=email.policy.default)
    assert outer.get_content_type() == "multipart/encrypted"
    assert outer.get_param("protocol") == "application/pgp-encrypted"
    version, data = outer.iter_parts()
    assert version.get_content().strip() == b"Version: 1"
    assert data.get_content_type() == "application/octet-stream"
    assert b"Rechnung" not in stored.raw and b"%PDF" not in stored.raw

    gpg.import_key(export_secret(runtime, BOB))
    gpg.import_key(export_secret(runtime, ALICE))
    plaintext, status = gpg_decrypt(gpg, stored.raw)
    assert "[GNUPG:] GOODSIG" in status and "[GNUPG:] DECRYPTION_OKAY" in status
    inner = email.message_from_bytes(plaintext, policy=email.policy.default)
    parts = [(p.get_content_type(), p.get_payload(decode=True)) for p in inner.walk()]
    sent_tree = email.message_from_bytes(raw, policy=email.policy.default)
    expected = [(p.get_content_type(), p.get_payload(decode=True)) for p in sent_tree.walk()]
    assert parts == expected  # same tree, same attachment bytes

    (sent,) = mailbox(runtime, ALICE, "Sent")
    assert sent.encrypted
    plaintext, status = gpg_decrypt(gpg, sent.raw)
    assert "GOODSIG" in status and b"rechnung.pdf" in plaintext


def test_header_trigger_and_control_headers_never_stored(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    runtime: Runtime,
) -> None:
    raw = (
        f"From: {ALICE}\r\nTo: {BOB}\r\nSubject: by header\r\nX-Sealgate-Encrypt: yes\r\n"
        "X-Sealgate-Whatever: private\r\n\r\nsecret body\r\n"
    ).encode()
    submit(submission_server, client_ssl_context, mail_users[ALICE], raw, [BOB])
    for row in mailbox(runtime, BOB) + mailbox(runtime, ALICE, "Sent"):
        assert row.encrypted
        assert b"X-Sealgate" not in row.raw and b"secret body" not in row.raw


def test_account_setting_and_domain_rule_triggers(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    runtime: Runtime,
) -> None:
    plain = f"From: {ALICE}\r\nTo: {BOB}\r\nSubject: plain\r\n\r\nhello\r\n".encode()
    submit(submission_server, client_ssl_context, mail_users[ALICE], plain, [BOB])
    with db.transaction(runtime.sessions) as session:
        session.add(EncryptionRule(domain="example.test"))
    submit(submission_server, client_ssl_context, mail_users[ALICE], plain, [BOB])
    with db.transaction(runtime.sessions) as session:
        session.execute(sa.delete(EncryptionRule))
        session.execute(
            sa.update(Account).where(Account.email == ALICE).values(always_encrypt=True)
        )
    submit(submission_server, client_ssl_context, mail_users[ALICE], plain, [BOB])
    assert [m.encrypted for m in mailbox(runtime, BOB)] == [False, True, True]
    # Unencrypted mail is stored exactly as submitted, after the one Received header.
    first = mailbox(runtime, BOB)[0].raw
    assert first.endswith(plain) and first.startswith(b"Received: ")


def test_external_recipient_without_key_is_never_sent_in_clear(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    runtime: Runtime,
) -> None:
    # Issue 5 replaced the 550 with the secure page: the relay gets a notification only.
    body = "the secret body text"
    raw = (
        f"From: {ALICE}\r\nTo: {BOB}, x@elsewhere.example\r\nSubject: [encrypt] hi\r\n"
        f"\r\n{body}\r\n"
    )
    with smtplib.SMTP_SSL(
        "127.0.0.1", submission_server.tls_port, context=client_ssl_context, timeout=60
    ) as client:
        client.login(ALICE, mail_users[ALICE])
        assert client.sendmail(ALICE, [BOB, "x@elsewhere.example"], raw.encode()) == {}
    (to_bob,) = mailbox(runtime, BOB)
    assert to_bob.encrypted and body.encode() not in to_bob.raw
    with db.transaction(runtime.sessions) as session:
        (item,) = session.scalars(sa.select(QueueItem)).all()
        sent = queue.open_raw(runtime.ring.get(), item)  # what the relay will send
    assert item.rcpt_to == "x@elsewhere.example" and item.sealed
    assert body.encode() not in sent and b"/s/" in sent


def test_bcc_recipient_key_ids_stay_hidden(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    runtime: Runtime,
    gpg: GnuPG,
) -> None:
    from gateway import accounts

    carol, dave = "carol@example.test", "dave@example.test"
    with db.transaction(runtime.sessions) as session:
        for who in (carol, dave):
            acct = accounts.add_account(session, runtime.hasher, who, "pw-" + who, actor="t")
            accounts.add_address(session, runtime.hasher, who, acct, "smtp-" + who, actor="t")
    raw = (
        f"From: {ALICE}\r\nTo: {BOB}\r\nCc: {carol}\r\nBcc: {dave}\r\n"
        "Subject: [encrypt] board minutes\r\n\r\nconfidential\r\n"
    ).encode()
    submit(submission_server, client_ssl_context, mail_users[ALICE], raw, [BOB, carol, dave])

    with db.transaction(runtime.sessions) as session:
        ids = {a: store.current_key(session, a) for a in (BOB, carol, dave)}
    subkey = {a: row.subkey_id for a, row in ids.items() if row is not None}

    def recipients_of(row: MailboxMessage) -> set[str]:
        packets = gpg.list_packets(pgpmime.encrypted_payload(row.raw) or b"")
        return {a for a, sid in subkey.items() if f"keyid {sid}" in packets}

    (to_bob,) = mailbox(runtime, BOB)
    (to_carol,) = mailbox(runtime, carol)
    (to_dave,) = mailbox(runtime, dave)
    assert recipients_of(to_bob) == {BOB, carol}
    assert recipients_of(to_carol) == {BOB, carol}
    assert recipients_of(to_dave) == {dave}
    for row in (to_bob, to_carol, to_dave):
        assert rawheaders.get(row.raw, "Bcc") is None and dave.encode() not in row.raw


def test_subject_tag_removal_cannot_add_a_header(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    runtime: Runtime,
) -> None:
    raw = (
        f"From: {ALICE}\r\nTo: {BOB}\r\n"
        "Subject: [encrypt] =?UTF-8?Q?hi=0ABcc:_x@y.example?=\r\n\r\nbody\r\n"
    ).encode()
    submit(submission_server, client_ssl_context, mail_users[ALICE], raw, [BOB])
    (stored,) = mailbox(runtime, BOB)
    outer = email.message_from_bytes(stored.raw, policy=email.policy.default)
    assert outer["Bcc"] is None and b"\nBcc:" not in stored.raw
    assert stored.subject == "hi Bcc: x@y.example"


PROTECTED_NAMES = ("From", "To", "Cc", "Reply-To", "Subject", "Date", "Message-ID")


def test_gpg_and_sequoia_open_a_copy_whose_signed_entity_protects_its_headers(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    runtime: Runtime,
    gpg: GnuPG,
) -> None:
    """RFC 9788 as two other OpenPGP implementations see it: the root of the decrypted
    entity says `hp="cipher"`, carries From, To, Cc, Reply-To, Subject, Date and
    Message-ID as the outer header has them (no Bcc), and an `HP-Outer` record of each;
    the signature over it is Alice's."""
    import pysequoia

    from gateway import accounts
    from keystore import pgp

    carol, dave = "carol@example.test", "dave@example.test"
    with db.transaction(runtime.sessions) as session:
        for who in (carol, dave):
            acct = accounts.add_account(session, runtime.hasher, who, "pw-" + who, actor="t")
            accounts.add_address(session, runtime.hasher, who, acct, "smtp-" + who, actor="t")
    raw = (
        f"From: =?utf-8?q?Alice_M=C3=BCller?= <{ALICE}>\r\nTo: Bob <{BOB}>\r\n"
        f'Cc: "Carol, the chair" <{carol}>\r\nBcc: {dave}\r\nReply-To: {ALICE}\r\n'
        "Subject: [encrypt] =?utf-8?q?Protokoll_der_Sitzung_vom_M=C3=A4rz_mit_allen_?=\r\n"
        " =?utf-8?q?Beschl=C3=BCssen_und_einer_sehr_langen_Zeile?=\r\n"
        "Date: Tue, 03 Mar 2026 09:15:00 +0100\r\nMessage-ID: <minutes-7@example.test>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\nBeschlüsse: keine.\r\n"
    ).encode()
    submit(submission_server, client_ssl_context, mail_users[ALICE], raw, [BOB, carol, dave])
    gpg.import_key(export_secret(runtime, BOB))
    gpg.import_key(export_secret(runtime, dave))
    gpg.import_key(export_secret(runtime, ALICE))
    with db.transaction(runtime.sessions) as session:
        alice_key = store.current_key(session, ALICE)
    assert alice_key is not None

    (to_bob,) = mailbox(runtime, BOB)
    (to_dave,) = mailbox(runtime, dave)
    for row in (to_bob, to_dave):
        plaintext, status = gpg_decrypt(gpg, row.raw)
        assert f"[GNUPG:] VALIDSIG {alice_key.fingerprint}" in status
        outer = {f.name: f for f in rawheaders.iter_headers(rawheaders.header_block(row.raw))}
        inner_fields = list(rawheaders.iter_headers(rawheaders.header_block(plaintext)))
        inner = {f.name: f.raw for f in inner_fields if f.name != "HP-Outer"}
        for name in PROTECTED_NAMES:
            assert inner[name] == outer[name].raw, name
        assert "Bcc" not in inner and dave.encode() not in plaintext
        records = [f.clean_value for f in inner_fields if f.name == "HP-Outer"]
        assert records == [f"{n}: ".encode() + outer[n].clean_value for n in PROTECTED_NAMES]
        entity = email.message_from_bytes(plaintext, policy=email.policy.default)
        assert entity.get_param("hp") == "cipher"
        assert entity.get_param("protected-headers") == "v1"
        assert entity.get_content_type() == "text/plain"
        assert str(entity["Subject"]) == (
            "Protokoll der Sitzung vom März mit allen Beschlüssen und einer sehr langen Zeile"
        )
        assert entity.get_content() == "Beschlüsse: keine.\r\n"

    # Sequoia opens Bob's copy to the same entity, with Alice's signature valid.
    bob_tsk = pysequoia.Tsk.from_bytes(export_secret(runtime, BOB))
    alice_cert = pysequoia.Cert.from_bytes(pgp.parse_public_key(alice_key.public_key).to_bytes())
    armored = pgpmime.encrypted_payload(to_bob.raw)
    assert armored is not None
    result = pysequoia.decrypt(
        armored, decryptor=bob_tsk.decryptor(), store=lambda _ids: [alice_cert]
    )
    assert bytes(result.bytes) == gpg_decrypt(gpg, to_bob.raw)[0]
    assert [s.certificate.upper() for s in result.valid_sigs] == [alice_key.fingerprint]
