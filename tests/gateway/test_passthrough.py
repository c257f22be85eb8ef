"""What must not be touched: already-encrypted mail, and DKIM-signed plain mail.

Already encrypted means so by structure (gateway.pipeline.passthrough): a quoted
armor block, a declared but fake multipart/encrypted or S/MIME type is encrypted
like any other message.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import email.policy
import smtplib
import ssl
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import dkim
import pytest
import sqlalchemy as sa
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

from gateway import db
from gateway.models import Account, MailboxMessage
from gateway.relay import Relay
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer
from gateway.timeutil import utcnow
from keystore import store
from tests.fakes.smarthost import FakeSmarthost, relay_settings_for
from tests.gnupg import GnuPG

ALICE, BOB, CAROL = "alice@example.test", "bob@example.test", "carol@elsewhere.example"


@pytest.fixture
def gpg(tmp_path: Path) -> Iterator[GnuPG]:
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    yield GnuPG(home)


@pytest.fixture
def always_encrypt(runtime: Runtime, mail_users: dict[str, str]) -> None:
    """Alice's account encrypts everything: pass-through must win over that."""
    with db.transaction(runtime.sessions) as session:
        session.execute(
            sa.update(Account).where(Account.email == ALICE).values(always_encrypt=True)
        )


def send(
    server: SubmissionServer, ctx: ssl.SSLContext, pw: str, raw: bytes, rcpts: list[str]
) -> None:
    with smtplib.SMTP_SSL("127.0.0.1", server.tls_port, context=ctx, timeout=60) as client:
        client.login(ALICE, pw)
        assert client.sendmail(ALICE, rcpts, raw) == {}


def relay_once(runtime: Runtime, smarthost: FakeSmarthost) -> None:
    relayed = dataclasses.replace(runtime, settings=relay_settings_for(runtime.settings, smarthost))

    async def sweep() -> None:
        await Relay(relayed).sweep()
        # The TLS shutdown of the relay's connection finishes after sweep() returns; let it,
        # before asyncio.run closes the loop (an unclosed transport warns, and warnings fail).
        await asyncio.sleep(0.5)

    asyncio.run(sweep())


def stored(runtime: Runtime) -> list[MailboxMessage]:
    with db.transaction(runtime.sessions) as session:
        return list(session.scalars(sa.select(MailboxMessage).order_by(MailboxMessage.id)))


# Date and Message-ID, which the gateway adds to a submission lacking them (RFC 6409 §8).
COMPLETE = "Date: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <passthrough@example.test>\r\n"


def strip_gateway_signatures(raw: bytes) -> bytes:
    """The message without the DKIM signatures the relay put in front (two: RSA, Ed25519)."""
    for _ in range(2):
        assert raw.startswith(b"DKIM-Signature: ")
        end = 0
        while True:
            end = raw.index(b"\r\n", end) + 2
            if raw[end : end + 1] not in (b" ", b"\t"):
                raw = raw[end:]
                break
    return raw


def strip_received(raw: bytes) -> bytes:
    """The message without the one (folded) Received header the gateway put in front,
    nor the relay's DKIM signatures above it, if any."""
    if raw.startswith(b"DKIM-Signature: "):
        raw = strip_gateway_signatures(raw)
    assert raw.startswith(b"Received: ")
    end = 0
    while True:
        end = raw.index(b"\r\n", end) + 2
        if raw[end : end + 1] not in (b" ", b"\t"):
            return raw[end:]


def test_pgp_mime_made_by_gpg_passes_through_byte_identical(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    always_encrypt: None,
    client_ssl_context: ssl.SSLContext,
    runtime: Runtime,
    smarthost: FakeSmarthost,
    gpg: GnuPG,
) -> None:
    with db.transaction(runtime.sessions) as session:
        row = store.get_or_create(session, runtime.ring.get(), BOB, utcnow(), events=_sink)
        gpg.import_key(row.public_key)
    encrypted = gpg.run(
        "--armor", "--encrypt", "--recipient", BOB, input=b"Content-Type: text/plain\r\n\r\nhi\r\n"
    ).stdout
    raw = (
        (
            f"From: {ALICE}\r\nTo: {BOB}, {CAROL}\r\nSubject: from gpg\r\nMIME-Version: 1.0\r\n"
            f"{COMPLETE}"
            'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted";'
            ' boundary="b1"\r\n\r\n--b1\r\nContent-Type: application/pgp-encrypted\r\n\r\n'
            "Version: 1\r\n\r\n--b1\r\nContent-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + encrypted.replace(b"\n", b"\r\n")
        + b"\r\n--b1--\r\n"
    )
    # CAROL has no key: already-encrypted mail still goes out, as it came.
    send(submission_server, client_ssl_context, mail_users[ALICE], raw, [BOB, CAROL])
    relay_once(runtime, smarthost)
    (to_bob,) = stored(runtime)
    (to_carol,) = smarthost.wait_for(1)
    assert strip_received(to_bob.raw) == raw
    assert strip_received(to_carol.content) == raw


def smime_enveloped(data: bytes) -> bytes:
    """A real CMS EnvelopedData (DER) to a throwaway certificate, made by cryptography."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, BOB)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return (
        pkcs7.PKCS7EnvelopeBuilder()
        .set_data(data)
        .add_recipient(cert)
        .encrypt(serialization.Encoding.DER, [])
    )


def test_inline_pgp_and_smime_are_not_encrypted_twice(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    always_encrypt: None,
    client_ssl_context: ssl.SSLContext,
    runtime: Runtime,
    gpg: GnuPG,
) -> None:
    with db.transaction(runtime.sessions) as session:
        row = store.get_or_create(session, runtime.ring.get(), BOB, utcnow(), events=_sink)
        gpg.import_key(row.public_key)
    armored = gpg.run("--armor", "--encrypt", "--recipient", BOB, input=b"inline hi\n").stdout
    inline = (
        f"From: {ALICE}\r\nTo: {BOB}\r\nSubject: inline\r\n{COMPLETE}\r\n".encode()
        + armored.replace(b"\n", b"\r\n")
    )
    der = base64.encodebytes(smime_enveloped(b"Content-Type: text/plain\r\n\r\nhi\r\n"))
    smime = (
        f"From: {ALICE}\r\nTo: {BOB}\r\nSubject: smime\r\nMIME-Version: 1.0\r\n{COMPLETE}"
        'Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
    ).encode() + der.replace(b"\n", b"\r\n")
    for raw in (inline, smime):
        send(submission_server, client_ssl_context, mail_users[ALICE], raw, [BOB])
    rows = stored(runtime)
    assert [strip_received(r.raw) for r in rows] == [inline, smime]
    assert not any(r.encrypted for r in rows)


@pytest.mark.parametrize(
    "shape",
    ["quoted armor", "armor after text", "fake multipart/encrypted", "fake S/MIME", "S/MIME data"],
)
def test_what_only_looks_encrypted_is_encrypted(
    shape: str,
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    always_encrypt: None,
    client_ssl_context: ssl.SSLContext,
    runtime: Runtime,
) -> None:
    """Once, each of these was taken for encrypted and stored in clear (issue 10)."""
    armor = "-----BEGIN PGP MESSAGE-----\r\n\r\nhQEMA0123\r\n-----END PGP MESSAGE-----\r\n"
    head = f"From: {ALICE}\r\nTo: {BOB}\r\nSubject: {shape}\r\nMIME-Version: 1.0\r\n"
    secret = "Secret-4b1d-text"
    bodies = {
        "quoted armor": f"\r\n{secret}\r\n> " + armor.replace("\r\n", "\r\n> "),
        "armor after text": f"\r\n{secret}\r\n" + armor,
        "fake multipart/encrypted": (
            'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted";'
            ' boundary="b1"\r\n\r\n--b1\r\nContent-Type: application/pgp-encrypted\r\n\r\n'
            "Version: 1\r\n\r\n--b1\r\nContent-Type: application/octet-stream\r\n\r\n"
            f"{secret}\r\n--b1--\r\n"
        ),
        "fake S/MIME": (
            "Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n"
            + base64.b64encode(b"\x30\x80" + secret.encode()).decode()
            + "\r\n"
        ),
        # A well-formed ContentInfo, but of plain data: the content is readable.
        "S/MIME data": (
            "Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n"
            "Content-Transfer-Encoding: base64\r\n\r\n"
            + base64.b64encode(
                cms.ContentInfo({"content_type": "data", "content": secret.encode()}).dump()
            ).decode()
            + "\r\n"
        ),
    }
    raw = (head + bodies[shape]).encode()
    send(submission_server, client_ssl_context, mail_users[ALICE], raw, [BOB])
    rows = stored(runtime)
    assert sorted(r.folder for r in rows) == ["INBOX", "Sent"]
    for row in rows:
        assert row.encrypted
        assert secret.encode() not in row.raw
        assert base64.b64encode(secret.encode())[:12] not in row.raw


def test_dkim_signed_plain_mail_arrives_with_a_valid_signature(
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    runtime: Runtime,
    smarthost: FakeSmarthost,
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = ALICE, CAROL, "Signed, not encrypted"
    msg["Date"] = "Fri, 27 Nov 2026 10:00:00 +0000"
    msg.set_content("A line that must arrive exactly.\n  With spaces.  \n")
    unsigned = msg.as_bytes(policy=email.policy.SMTP)
    signature = dkim.sign(
        unsigned,
        b"sel",
        b"example.test",
        private_pem,
        include_headers=[b"from", b"to", b"subject", b"date"],
    )
    signed = signature + unsigned

    def dns(name: bytes, timeout: int = 5) -> bytes:
        """The DNS TXT answer for the selector (DNS is outside the machine)."""
        assert name == b"sel._domainkey.example.test."
        return b"v=DKIM1; k=rsa; p=" + base64.b64encode(public_der)

    assert dkim.verify(signed, dnsfunc=dns)
    send(submission_server, client_ssl_context, mail_users[ALICE], signed, [CAROL])
    relay_once(runtime, smarthost)
    (arrived,) = smarthost.wait_for(1)
    assert strip_received(arrived.content) == signed
    # The sender's own signature (after the relay's two) still verifies.
    assert dkim.DKIM(arrived.content).verify(idx=2, dnsfunc=dns)


def _sink(session: object, action: str, target: str, detail: str) -> None:
    """Key events of this test setup are not under test."""
    assert action == "key.create"
