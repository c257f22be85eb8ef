"""Must-show: mail sent encrypted over SMTP reaches a mail program over IMAP as the stored
PGP/MIME, and GnuPG opens it with the key downloaded from the Security page (with the
passphrase chosen there), the signature valid. A program's plain copy of such a
message (same Message-ID) appended to Sent leaves no plaintext at rest."""

from __future__ import annotations

import email
import email.policy
import imaplib
import re
import smtplib
import ssl
from pathlib import Path

import sqlalchemy as sa
from flask import Flask

from gateway import db
from gateway.imap.server import ImapServer
from gateway.models import MailboxMessage
from gateway.pipeline import pgpmime
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer
from keystore import pgp, store
from tests.gnupg import GnuPG

from .account_support import BOB, Browser

ALICE = "alice@example.test"
PASSPHRASE = "bob's own key passphrase"


def original(message_id: str) -> bytes:
    return (
        f"From: {ALICE}\r\nTo: {BOB}\r\nSubject: [encrypt] Salary review\r\n"
        f"Message-ID: {message_id}\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nThe new figure is 4200 a month.\r\n"
    ).encode()


def send(server: SubmissionServer, ctx: ssl.SSLContext, password: str, raw: bytes) -> None:
    with smtplib.SMTP_SSL("127.0.0.1", server.tls_port, context=ctx, timeout=60) as client:
        client.login(ALICE, password)
        client.sendmail(ALICE, [BOB], raw)


def test_encrypted_mail_fetched_over_imap_opens_with_the_downloaded_key(
    app: Flask,
    runtime: Runtime,
    submission_server: SubmissionServer,
    imap_server: ImapServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    tmp_path: Path,
) -> None:
    send(
        submission_server, client_ssl_context, mail_users[ALICE], original("<salary@example.test>")
    )

    imap = imaplib.IMAP4_SSL("127.0.0.1", imap_server.tls_port, ssl_context=client_ssl_context)
    imap.login(BOB, mail_users[BOB])
    imap.select("INBOX")
    _typ, data = imap.fetch("1", "(BODY.PEEK[])")
    fetched = data[0][1]
    imap.logout()
    outer = email.message_from_bytes(fetched, policy=email.policy.default)
    assert outer.get_content_type() == "multipart/encrypted"
    assert outer.get_param("protocol") == "application/pgp-encrypted"
    assert b"4200" not in fetched

    portal = Browser(app.test_client())
    assert portal.login(BOB, "portal-" + mail_users[BOB]).status_code == 302
    form = {"address": BOB, "passphrase": PASSPHRASE, "repeat": PASSPHRASE}
    download = portal.post("/account/secret-key", form)
    assert download.status_code == 200
    with db.read_only(runtime.sessions) as session:
        alice_public = pgp.armor_public_keys([store.public_key(session, ALICE)])  # type: ignore[list-item]

    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    gpg = GnuPG(home)
    gpg.run("--import", input=alice_public.encode())
    # The downloaded key is locked: without its passphrase gpg cannot use it.
    gpg.run("--passphrase", PASSPHRASE, "--import", input=download.data)
    armored = pgpmime.encrypted_payload(fetched)
    assert armored is not None
    refused = gpg.run("--passphrase", "wrong", "--decrypt", input=armored, check=False)
    assert refused.returncode != 0
    opened = gpg.run("--status-fd", "2", "--passphrase", PASSPHRASE, "--decrypt", input=armored)
    status = opened.stderr.decode(errors="replace")
    assert "[GNUPG:] DECRYPTION_OKAY" in status and "[GNUPG:] GOODSIG" in status
    assert re.search(r"\[GNUPG:\] VALIDSIG", status)
    assert b"The new figure is 4200 a month." in opened.stdout


def test_a_plain_copy_appended_to_sent_stays_the_encrypted_one(
    runtime: Runtime,
    submission_server: SubmissionServer,
    imap_server: ImapServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    raw = original("<copy-test@example.test>")
    send(submission_server, client_ssl_context, mail_users[ALICE], raw)
    imap = imaplib.IMAP4_SSL("127.0.0.1", imap_server.tls_port, ssl_context=client_ssl_context)
    imap.login(ALICE, mail_users[ALICE])
    typ, _data = imap.append("Sent", "(\\Seen)", None, raw)  # what Thunderbird does after sending
    assert typ == "OK"
    typ, _data = imap.append("Drafts", "(\\Seen)", None, raw)  # and into another folder
    assert typ == "OK"
    imap.select("Sent")
    _typ, data = imap.fetch("1:*", "(BODY.PEEK[])")
    bodies = [d[1] for d in data if isinstance(d, tuple)]
    imap.logout()
    assert len(bodies) == 1 and b"4200" not in bodies[0]
    with db.read_only(runtime.sessions) as session:
        rows = session.scalars(
            sa.select(MailboxMessage).where(MailboxMessage.message_id == "<copy-test@example.test>")
        ).all()
    assert {(r.folder, r.encrypted) for r in rows} >= {("Sent", True), ("Drafts", True)}
    assert all(b"4200" not in r.raw for r in rows)
    assert all(r.search_text is None or "4200" not in r.search_text for r in rows)


def test_search_matches_encrypted_mail_by_subject_only(
    runtime: Runtime,
    submission_server: SubmissionServer,
    imap_server: ImapServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    send(submission_server, client_ssl_context, mail_users[ALICE], original("<s@example.test>"))
    imap = imaplib.IMAP4_SSL("127.0.0.1", imap_server.tls_port, ssl_context=client_ssl_context)
    imap.login(BOB, mail_users[BOB])
    imap.select("INBOX")
    assert imap.search(None, "TEXT", "salary") == ("OK", [b"1"])
    assert imap.search(None, "TEXT", "4200") == ("OK", [b""])
    assert imap.search(None, "BODY", "PGP") == ("OK", [b""])  # not the armor either
    imap.logout()
