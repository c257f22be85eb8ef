"""Threat: a hosted user who encrypts with their own mail program sends mail the
hosted recipient's webmail never opens.

Alice encrypts with GnuPG (PGP/MIME, RFC 3156) to Bob's key, as WKD or Autocrypt gave
it to her mail program, signs with her own key (downloaded from the Security page) and
submits over SMTP (587, STARTTLS and AUTH). The gateway passes such mail through
untouched, but stored Bob's copy as not encrypted: the webmail showed "Not encrypted"
and the ciphertext as an attachment, as it once did for the same mail over the MX
(tests/security/test_inbound_pgp_mail.py). Now the copy is stored as encrypted and read
like the gateway's own, the signature valid by Alice's hosted key. The gateway did not
encrypt it: it counts as "passthrough" and adds nothing to the encryption time.
"""

from __future__ import annotations

import datetime as dt
import imaplib
import smtplib
import ssl
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway import db, metrics
from gateway.imap.server import ImapServer
from gateway.models import MailLogEntry
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer
from keystore import store
from tests.gateway.test_external_delivery import keystore_secret
from tests.gnupg import GnuPG
from tests.security.test_inbound_pgp_mail import SECRET, pgp_mime, text_of
from tests.webportal.webmail_support import ALICE, BOB, Webmail, rows, webmail_app
from webportal.i18n import translate
from webportal.mail import SIGNATURES


@pytest.fixture
def alices_program(tmp_path: Path, runtime: Runtime, mail_users: dict[str, str]) -> GnuPG:
    """Alice's GnuPG, with her own secret key (as downloaded) and Bob's public key."""
    home = tmp_path / "alice"
    home.mkdir(mode=0o700)
    gpg = GnuPG(home)
    with db.transaction(runtime.sessions) as session:
        for address in (ALICE, BOB):  # made on first use, as the gateway makes them
            row = store.get_or_create(
                session, runtime.ring.get(), address, dt.datetime.now(dt.UTC), events=no_events
            )
            if address == BOB:
                gpg.import_key(row.public_key)
    gpg.import_key(keystore_secret(runtime, ALICE))
    return gpg


def no_events(*_args: object) -> None:
    pass


def signed_and_encrypted(program: GnuPG, *recipients: str) -> bytes:
    """Alice's message as her mail program makes it: signed, encrypted, PGP/MIME."""
    entity = f"Content-Type: text/plain; charset=utf-8\r\n\r\n{SECRET}\r\n".encode()
    to = [arg for recipient in recipients for arg in ("--recipient", recipient)]
    armored = program.run(
        "--armor",
        "--trust-model",
        "always",
        "--sign",
        "--local-user",
        ALICE,
        "--encrypt",
        *to,
        input=entity,
    ).stdout
    return pgp_mime(ALICE, "figures", armored.replace(b"\n", b"\r\n"))


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels or {}) or 0.0


def test_pgp_mime_from_a_hosted_users_mail_program_is_read_decrypted_in_the_webmail(
    runtime: Runtime,
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    alices_program: GnuPG,
) -> None:
    raw = signed_and_encrypted(alices_program, BOB)
    timed = sample("sealgate_encrypt_seconds_count")
    passed = sample("sealgate_messages_total", {"handling": "passthrough"})

    with smtplib.SMTP("127.0.0.1", submission_server.submission_port, timeout=60) as client:
        client.starttls(context=client_ssl_context)
        client.login(ALICE, mail_users[ALICE])
        assert client.sendmail(ALICE, [BOB], raw) == {}

    (row,) = rows(runtime, BOB)
    assert row.encrypted and row.search_text is None
    bob = Webmail(webmail_app(runtime).test_client()).login(BOB)
    page = bob.get(f"/mail/{row.id}")
    assert page.status_code == 200
    shown = text_of(page.text)
    assert "Encrypted" in shown and "Not encrypted" not in shown
    assert SECRET in shown
    # Her program signs the text only (no protected header fields, RFC 9788).
    assert translate("en", SIGNATURES["valid-text-only"]) in shown
    # Not the gateway's encryption: handled as passthrough, no encryption time.
    with db.read_only(runtime.sessions) as session:
        assert session.scalars(sa.select(MailLogEntry.handling)).all() == ["passthrough"]
    assert sample("sealgate_messages_total", {"handling": "passthrough"}) == passed + 1
    assert sample("sealgate_encrypt_seconds_count") == timed


def test_an_encrypted_copy_a_mail_program_saves_over_imap_is_read_decrypted(
    runtime: Runtime,
    imap_server: ImapServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    alices_program: GnuPG,
) -> None:
    """Her program keeps its Sent copy encrypted to her own key, saved with APPEND."""
    raw = signed_and_encrypted(alices_program, ALICE, BOB)

    with imaplib.IMAP4_SSL(
        "127.0.0.1", imap_server.tls_port, ssl_context=client_ssl_context
    ) as client:
        client.login(ALICE, mail_users[ALICE])
        status, _ = client.append("Sent", r"(\Seen)", None, raw)
        assert status == "OK"

    (row,) = rows(runtime, ALICE, "Sent")
    assert row.encrypted and row.search_text is None and row.raw == raw
    alice = Webmail(webmail_app(runtime).test_client()).login(ALICE)
    shown = text_of(alice.get(f"/mail/{row.id}").text)
    assert "Encrypted" in shown and "Not encrypted" not in shown
    assert SECRET in shown
    # Her program signs the text only (no protected header fields, RFC 9788).
    assert translate("en", SIGNATURES["valid-text-only"]) in shown
