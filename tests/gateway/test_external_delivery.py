"""Encrypted delivery to a key-holding external recipient, end to end (issue 4, Must show 1).

A real SMTP submission over TLS carries a message with a German subject, an HTML
part and a PDF attachment to one hosted recipient and one external recipient
whose key gpg made in the test: once imported by the admin with
`sealgate keys import`, once found by Web Key Directory on a real HTTPS server.
The external copy goes through the relay to a recording smarthost; gpg opens it
to the original MIME tree (same parts, same attachment bytes), the sender's
signature verifies with the sender's key from the keystore, and the copy carries
an `Autocrypt:` header with that key. The hosted copy is checked the same way.
A Bcc'd external key-holder gets a ciphertext of their own. A hostile WKD answer
costs its parse budget while the SMTP server keeps answering other clients.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import email
import email.policy
import smtplib
import ssl
import threading
from collections.abc import Iterator
from email.message import EmailMessage, Message
from pathlib import Path

import pytest
import sqlalchemy as sa
import trustme

from gateway import db, rawheaders
from gateway.models import MailboxMessage
from gateway.pipeline import pgpmime
from gateway.relay import Relay
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer
from gateway.wkd_client import Transport
from keystore import pgp, store
from keystore.models import WkdMiss
from tests.conftest import LoopThread
from tests.fakes.smarthost import FakeSmarthost, RecordedMessage, relay_settings_for
from tests.fakes.wkd_server import WkdServer
from tests.gnupg import GnuPG
from tests.keystore.conftest import run_sealgate
from tests.keystore.gpgkeys import export, make_key
from tests.keystore.hostile import hostile_armor

ALICE, BOB = "alice@example.test", "bob@example.test"
CAROL, DAVE = "carol@partner.example", "dave@partner.example"
SUBJECT = "Grüße aus Zürich – Überweisung für März"
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 64 + b"\n%%EOF\n"


def gnupg(path: Path) -> Iterator[GnuPG]:
    path.mkdir(mode=0o700)
    yield GnuPG(path)


@pytest.fixture
def partner(tmp_path: Path) -> Iterator[GnuPG]:
    """The external correspondents' own GnuPG: their secret keys live only here."""
    yield from gnupg(tmp_path / "partner")


@pytest.fixture
def hosted_gpg(tmp_path: Path) -> Iterator[GnuPG]:
    yield from gnupg(tmp_path / "hosted")


@pytest.fixture
def wkd(tls_ca: trustme.CA) -> Iterator[WkdServer]:
    server = WkdServer(tls_ca, ["openpgpkey.partner.example", "partner.example"])
    yield server
    server.close()


@pytest.fixture
def rt(
    runtime: Runtime,
    smarthost: FakeSmarthost,
    wkd: WkdServer,
    client_ssl_context: ssl.SSLContext,
    mail_users: dict[str, str],
) -> Runtime:
    """The gateway's runtime: relaying to the fake smarthost, WKD reaching the test server."""
    settings = relay_settings_for(runtime.settings, smarthost).replace(keys={"parse_timeout": 4.0})
    transport = Transport(resolver=wkd.resolver, ssl_context=client_ssl_context)
    return dataclasses.replace(runtime, settings=settings, wkd_transport=transport)


@pytest.fixture
def server(rt: Runtime, loop_thread: LoopThread) -> Iterator[SubmissionServer]:
    smtp = SubmissionServer(rt)
    loop_thread.run(smtp.start())
    yield smtp
    loop_thread.run(smtp.stop(grace=5))


def rich_message(to: str, cc: str = "", bcc: str = "") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = ALICE
    msg["To"] = to
    if cc:
        msg["Cc"] = cc
    if bcc:
        msg["Bcc"] = bcc
    msg["Subject"] = SUBJECT
    msg["Message-ID"] = "<external-1@example.test>"
    msg["X-Sealgate-Encrypt"] = "yes"
    msg.set_content("Hallo zusammen,\nanbei die Rechnung für März. Grüße, Alice\n")
    msg.add_alternative(
        "<p>Hallo <b>zusammen</b>, anbei die Rechnung für März.</p>", subtype="html"
    )
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="rechnung-märz.pdf")
    return msg


def send(
    server: SubmissionServer, ctx: ssl.SSLContext, password: str, raw: bytes, rcpts: list[str]
) -> None:
    with smtplib.SMTP_SSL("127.0.0.1", server.tls_port, context=ctx, timeout=60) as client:
        client.login(ALICE, password)
        assert client.sendmail(ALICE, rcpts, raw, mail_options=["SMTPUTF8"]) == {}


async def _sweep(rt: Runtime) -> None:
    await Relay(rt).sweep()
    # sweep() returns while the TLS shutdown of its smarthost connections is still
    # under way; let it finish before asyncio.run closes the loop (else the socket
    # transports are collected unclosed and warn).
    await asyncio.sleep(0.5)


def relay(rt: Runtime, smarthost: FakeSmarthost, count: int) -> dict[str, RecordedMessage]:
    asyncio.run(_sweep(rt))
    arrived = smarthost.wait_for(count)
    assert all(m.tls for m in arrived)
    return {m.rcpt_tos[0]: m for m in arrived if len(m.rcpt_tos) == 1}


def tree(message: Message) -> list[tuple[str, bytes | None]]:
    return [(p.get_content_type(), p.get_payload(decode=True)) for p in message.walk()]


def subkey_id(gpg: GnuPG, fingerprint: str) -> str:
    lines = gpg.run("--with-colons", "--list-keys", fingerprint).stdout.decode().splitlines()
    return next(line.split(":")[4] for line in lines if line.startswith("sub:"))


def keystore_public(rt: Runtime, address: str) -> pgp.PublicKey:
    with db.read_only(rt.sessions) as session:
        key = store.public_key(session, address)
    assert key is not None
    return key


def keystore_secret(rt: Runtime, address: str) -> bytes:
    with db.read_only(rt.sessions) as session:
        keys = store.secret_keys_for_decryption(session, rt.ring.get(), address)
    return b"".join(pgp.secret_key_bytes(k) for k in keys)


def inbox(rt: Runtime, address: str) -> list[MailboxMessage]:
    with db.read_only(rt.sessions) as session:
        return list(
            session.scalars(
                sa.select(MailboxMessage)
                .join(MailboxMessage.address)
                .where(sa.text("addresses.address = :a"), MailboxMessage.folder == "INBOX")
                .params(a=address)
            )
        )


def open_with_gpg(gpg: GnuPG, raw: bytes, signer: pgp.PublicKey) -> Message:
    """Decrypt a PGP/MIME copy with gpg; the signature must be the sender's and good."""
    outer = email.message_from_bytes(raw, policy=email.policy.default)
    assert outer.get_content_type() == "multipart/encrypted"
    assert outer.get_param("protocol") == "application/pgp-encrypted"
    armored = pgpmime.encrypted_payload(raw)
    assert armored is not None
    result = gpg.run("--status-fd", "2", "--decrypt", input=armored)
    status = result.stderr.decode(errors="replace")
    assert "[GNUPG:] DECRYPTION_OKAY" in status and "[GNUPG:] GOODSIG" in status
    assert f"[GNUPG:] VALIDSIG {signer.fingerprint}" in status
    return email.message_from_bytes(result.stdout, policy=email.policy.default)


def publish_or_import(
    how: str,
    rt: Runtime,
    test_env: dict[str, str],
    wkd: WkdServer,
    partner: GnuPG,
    address: str,
    fingerprint: str,
    tmp_path: Path,
) -> None:
    if how == "wkd":
        wkd.publish(address, export(partner, fingerprint))
        return
    keyfile = tmp_path / f"{address}.asc"
    keyfile.write_bytes(export(partner, fingerprint, armor=True))
    result = run_sealgate(test_env, "keys", "import", str(keyfile))
    assert result.returncode == 0, result.stderr
    assert f"{address}: key {fingerprint} added" in result.stdout


@pytest.mark.parametrize("how", ["import", "wkd"])
def test_hosted_and_external_recipients_get_pgp_mime_that_gpg_opens(
    how: str,
    rt: Runtime,
    server: SubmissionServer,
    smarthost: FakeSmarthost,
    wkd: WkdServer,
    partner: GnuPG,
    hosted_gpg: GnuPG,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    test_env: dict[str, str],
    tmp_path: Path,
) -> None:
    carol = make_key(partner, f"Carol Partner <{CAROL}>")
    publish_or_import(how, rt, test_env, wkd, partner, CAROL, carol, tmp_path)
    raw = rich_message(to=f"{BOB}, {CAROL}").as_bytes(policy=email.policy.SMTP)
    send(server, client_ssl_context, mail_users[ALICE], raw, [BOB, CAROL])
    assert (wkd.requests_for(CAROL) != []) == (how == "wkd")

    # The sender's key, as the keystore has it, is what recipients verify with.
    alice = keystore_public(rt, ALICE)
    with db.read_only(rt.sessions) as session:
        alice_export = store.export_public(session, ALICE).encode()
    expected = tree(email.message_from_bytes(raw, policy=email.policy.default))

    # External copy: relayed, encrypted, signed, with Autocrypt, plaintext nowhere.
    copies = relay(rt, smarthost, 1)
    relayed = copies[CAROL].content
    assert copies[CAROL].mail_from == ALICE
    for secret in (b"Rechnung", b"%PDF", b"X-Sealgate"):
        assert secret not in relayed
    header = rawheaders.get(relayed, "Autocrypt")
    assert header is not None
    fields = dict(part.strip().split("=", 1) for part in "".join(header.split()).split(";") if part)
    assert fields["addr"] == ALICE and fields["prefer-encrypt"] == "mutual"
    assert base64.b64decode(fields["keydata"]) == alice.to_bytes()
    outer = email.message_from_bytes(relayed, policy=email.policy.default)
    assert str(outer["Subject"]) == SUBJECT  # in clear, as for hosted mail

    partner.import_key(alice_export)
    inner = open_with_gpg(partner, relayed, alice)
    assert tree(inner) == expected
    attachment = next(p for p in inner.walk() if p.get_content_type() == "application/pdf")
    assert attachment.get_payload(decode=True) == PDF
    assert attachment.get_filename() == "rechnung-märz.pdf"
    # gpg reads the Autocrypt key too: it is the sender's current key.
    autocrypt_home = tmp_path / "autocrypt"
    autocrypt_home.mkdir(mode=0o700)
    autocrypt_gpg = GnuPG(autocrypt_home)
    autocrypt_gpg.import_key(base64.b64decode(fields["keydata"]))
    assert autocrypt_gpg.fingerprints() == [alice.fingerprint]

    # Hosted copy: in Bob's mailbox, opened by gpg with Bob's key the same way.
    (stored,) = inbox(rt, BOB)
    assert stored.encrypted and b"%PDF" not in stored.raw
    hosted_gpg.import_key(keystore_secret(rt, BOB))
    hosted_gpg.import_key(alice_export)
    assert tree(open_with_gpg(hosted_gpg, stored.raw, alice)) == expected

    # One ciphertext for the visible recipients: both keys named, in both copies.
    bob_subkey = keystore_public(rt, BOB).subkey_ids[0]
    carol_subkey = subkey_id(partner, carol)
    for copy in (relayed, stored.raw):
        packets = partner.list_packets(pgpmime.encrypted_payload(copy) or b"")
        assert f"keyid {bob_subkey}" in packets and f"keyid {carol_subkey}" in packets


def test_bcc_external_key_holder_gets_a_ciphertext_of_their_own(
    rt: Runtime,
    server: SubmissionServer,
    smarthost: FakeSmarthost,
    wkd: WkdServer,
    partner: GnuPG,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    test_env: dict[str, str],
    tmp_path: Path,
) -> None:
    carol = make_key(partner, f"Carol <{CAROL}>")
    dave = make_key(partner, f"Dave <{DAVE}>")
    publish_or_import("import", rt, test_env, wkd, partner, CAROL, carol, tmp_path)
    publish_or_import("wkd", rt, test_env, wkd, partner, DAVE, dave, tmp_path)
    raw = rich_message(to=BOB, cc=CAROL, bcc=DAVE).as_bytes(policy=email.policy.SMTP)
    send(server, client_ssl_context, mail_users[ALICE], raw, [BOB, CAROL, DAVE])

    copies = relay(rt, smarthost, 2)
    assert set(copies) == {CAROL, DAVE}
    (to_bob,) = inbox(rt, BOB)
    ids = {
        BOB: keystore_public(rt, BOB).subkey_ids[0],
        CAROL: subkey_id(partner, carol),
        DAVE: subkey_id(partner, dave),
    }

    def named(raw_copy: bytes) -> set[str]:
        packets = partner.list_packets(pgpmime.encrypted_payload(raw_copy) or b"")
        return {who for who, key_id in ids.items() if f"keyid {key_id}" in packets}

    assert named(copies[CAROL].content) == {BOB, CAROL}
    assert named(to_bob.raw) == {BOB, CAROL}
    assert named(copies[DAVE].content) == {DAVE}
    for visible in (copies[CAROL].content, to_bob.raw):
        assert rawheaders.get(visible, "Bcc") is None and DAVE.encode() not in visible
    assert rawheaders.get(copies[DAVE].content, "Bcc") is None

    with db.read_only(rt.sessions) as session:
        partner.import_key(store.export_public(session, ALICE).encode())
    inner = open_with_gpg(partner, copies[DAVE].content, keystore_public(rt, ALICE))
    assert inner["Bcc"] is None
    assert tree(inner) == tree(email.message_from_bytes(raw, policy=email.policy.default))


def test_a_hostile_wkd_answer_never_stalls_the_server(
    rt: Runtime,
    server: SubmissionServer,
    wkd: WkdServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    wkd.publish(CAROL, hostile_armor())
    raw = rich_message(to=f"{BOB}, {CAROL}").as_bytes(policy=email.policy.SMTP)
    order: list[str] = []
    failures: list[BaseException] = []

    def first_client() -> None:
        try:
            send(server, client_ssl_context, mail_users[ALICE], raw, [BOB, CAROL])
            order.append("message accepted")
        except BaseException as exc:  # noqa: BLE001  (reported by the main thread)
            failures.append(exc)

    sender = threading.Thread(target=first_client)
    sender.start()
    assert wkd.served.wait(30), "the gateway never asked the directory"
    # The hostile key is being parsed now (for up to 4 s): another client is served.
    with smtplib.SMTP_SSL(
        "127.0.0.1", server.tls_port, context=client_ssl_context, timeout=60
    ) as other:
        assert other.ehlo()[0] == 250
        other.login(BOB, mail_users[BOB])
        assert other.noop()[0] == 250
    order.append("other client served")
    sender.join(60)
    assert failures == []
    assert order == ["other client served", "message accepted"]

    # Carol's key was refused within its budget; she was not sent PGP in clear or otherwise.
    with db.read_only(rt.sessions) as session:
        miss = session.get(WkdMiss, CAROL)
    assert miss is not None
    assert miss.reason == "answer refused: parsing took longer than 4 s and was stopped"
    (stored,) = inbox(rt, BOB)
    assert stored.encrypted
