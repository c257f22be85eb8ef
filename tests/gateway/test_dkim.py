"""DKIM: every domain gets Ed25519 and RSA keys at `add_domain`, sealed under the master key,
and the relay signs what leaves, after encryption. dkimpy verifies the signatures of a
relayed encrypted message and of a secure-page notification, with the public keys
fetched over the DNS wire protocol from a fake name server serving what `sealgate dns`
publishes; each signature's d= is the From domain (DMARC-aligned)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import email
import email.policy
import smtplib
import ssl
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import dkim
import pytest
import sqlalchemy as sa

from gateway import accounts, db, rawheaders
from gateway import queue as outbound
from gateway.dkim import keys as dkim_keys
from gateway.dkim import sign as dkim_sign
from gateway.dnsrecords import records
from gateway.models import DkimKey
from gateway.pipeline import pgpmime
from gateway.relay import Relay
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer
from keystore import seal
from tests.fakes.dns_server import FakeDns
from tests.fakes.smarthost import (
    FakeSmarthost,
    RecordedMessage,
    SmarthostFactory,
    relay_settings_for,
)
from tests.gnupg import GnuPG
from tests.keystore.conftest import run_sealgate
from tests.keystore.gpgkeys import export, make_key

ALICE = "alice@example.test"
NOW = dt.datetime(2026, 12, 6, 9, 0, tzinfo=dt.UTC)
CAROL = "carol@partner.example"  # has an imported key: gets PGP/MIME
DAN = "dan@elsewhere.example"  # no key: gets a secure-page notification


@pytest.fixture
def zone(runtime: Runtime, mail_users: dict[str, str]) -> Iterator[FakeDns]:
    """example.test's name server, serving exactly what `sealgate dns` would print."""
    with db.read_only(runtime.sessions) as session:
        domain = accounts.find_domain(session, "example.test")
        assert domain is not None
        found = records.domain_records(
            runtime.settings, domain.name, dkim_keys.current_keys(session, domain.id)
        )
    with FakeDns(records.zone_text(found, 300), origin="example.test.") as server:
        yield server


def message(to: str, subject: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Alice Example <{ALICE}>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["X-Sealgate-Encrypt"] = "yes"
    msg["X-Sealgate-Password"] = "a long shared password"
    msg.set_content("Grüße, the contract is attached in spirit.\n")
    return msg.as_bytes(policy=email.policy.SMTP)


def send(
    server: SubmissionServer, ctx: ssl.SSLContext, password: str, raw: bytes, rcpt: str
) -> None:
    with smtplib.SMTP_SSL("127.0.0.1", server.tls_port, context=ctx, timeout=60) as client:
        client.login(ALICE, password)
        assert client.sendmail(ALICE, [rcpt], raw, mail_options=["SMTPUTF8"]) == {}


def relay_all(runtime: Runtime, smarthost: FakeSmarthost, count: int) -> list[RecordedMessage]:
    rt = dataclasses.replace(runtime, settings=relay_settings_for(runtime.settings, smarthost))

    async def sweep() -> None:
        await Relay(rt).sweep()
        await asyncio.sleep(0.5)  # let the TLS shutdown finish inside the loop

    asyncio.run(sweep())
    return smarthost.wait_for(count)


def signatures(raw: bytes) -> list[dict[bytes, bytes]]:
    found = []
    for field in rawheaders.headers(raw):
        if field.name.lower() == "dkim-signature":
            value = field.raw.split(b":", 1)[1]
            found.append(dkim.util.parse_tag_value(value))
    return found


def assert_signed_and_aligned(raw: bytes, zone: FakeDns) -> None:
    """Both signatures verify (keys fetched over DNS) and sign as the From domain."""
    sigs = signatures(raw)
    assert sorted(s[b"a"] for s in sigs) == [b"ed25519-sha256", b"rsa-sha256"]
    verifier = dkim.DKIM(raw)
    for index in range(len(sigs)):
        assert verifier.verify(idx=index, dnsfunc=zone.txt_lookup), f"signature {index}"
    from_domain = dkim_sign.from_domain(raw)
    assert from_domain == "example.test"
    assert {s[b"d"] for s in sigs} == {b"example.test"}  # aligned with From (DMARC)
    assert all(b"from" in b"".join(s[b"h"].split()).lower().split(b":") for s in sigs)
    # The check can fail: one changed byte in the body breaks both signatures.
    tampered = raw.replace(b"\r\n\r\n", b"\r\n\r\nX", 1)
    for index in range(len(sigs)):
        assert not verifies(tampered, index, zone)


def verifies(raw: bytes, index: int, zone: FakeDns) -> bool:
    try:
        return bool(dkim.DKIM(raw).verify(idx=index, dnsfunc=zone.txt_lookup))
    except dkim.ValidationError:
        return False


def test_domain_add_makes_sealed_ed25519_and_rsa_keys(runtime: Runtime) -> None:
    with db.transaction(runtime.sessions) as session:
        domain = accounts.add_domain(session, "Example.ORG", actor="test")
        rows = dkim_keys.current_keys(session, domain.id)
        assert [r.algorithm for r in rows] == ["rsa", "ed25519"]
        ring = runtime.ring.get()
        for row in rows:
            assert row.master_version == ring.primary
            opened = dkim_keys.open_key(ring, row, "example.org")
            assert opened.private not in row.sealed_private_key  # sealed, not stored in clear
            assert repr(opened.private)[2:20] not in repr(opened)  # never printed
            # Bound to its row: under another domain's name it does not open.
            with pytest.raises(seal.SealedRecordError):
                dkim_keys.open_key(ring, row, "example.net")
        # Idempotent: a second ensure makes nothing new.
        again = dkim_keys.ensure_keys(session, ring, domain, domain.created_at)
        assert {r.id for r in again} == {r.id for r in rows}


def test_relayed_encrypted_message_is_signed_after_encryption(
    runtime: Runtime,
    mail_users: dict[str, str],
    submission_server: SubmissionServer,
    client_ssl_context: ssl.SSLContext,
    smarthost: FakeSmarthost,
    zone: FakeDns,
    test_env: dict[str, str],
    tmp_path: Path,
) -> None:
    home = tmp_path / "partner"
    home.mkdir(mode=0o700)
    partner = GnuPG(home)
    carol = make_key(partner, f"Carol <{CAROL}>")
    keyfile = tmp_path / "carol.asc"
    keyfile.write_bytes(export(partner, carol, armor=True))
    assert run_sealgate(test_env, "keys", "import", str(keyfile)).returncode == 0

    send(submission_server, client_ssl_context, mail_users[ALICE], message(CAROL, "hi"), CAROL)
    [relayed] = relay_all(runtime, smarthost, 1)
    parsed = email.message_from_bytes(relayed.content, policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/encrypted"  # signed over the ciphertext
    assert_signed_and_aligned(relayed.content, zone)
    # Carol can still decrypt what was signed.
    armored = pgpmime.encrypted_payload(relayed.content)
    assert armored is not None
    decrypted = partner.run("--status-fd", "2", "--decrypt", input=armored, check=False)
    assert b"[GNUPG:] DECRYPTION_OKAY" in decrypted.stderr
    assert "Grüße".encode() in decrypted.stdout


def test_secure_page_notification_is_signed(
    runtime: Runtime,
    mail_users: dict[str, str],
    submission_server: SubmissionServer,
    client_ssl_context: ssl.SSLContext,
    smarthost: FakeSmarthost,
    zone: FakeDns,
) -> None:
    send(submission_server, client_ssl_context, mail_users[ALICE], message(DAN, "hello"), DAN)
    [notification] = relay_all(runtime, smarthost, 1)
    assert notification.rcpt_tos == (DAN,)
    assert b"/s/" in notification.content  # the link: this is the notification
    assert_signed_and_aligned(notification.content, zone)


def test_mail_from_a_subdomain_is_signed_as_the_hosted_parent_and_others_not_at_all(
    runtime: Runtime, mail_users: dict[str, str], zone: FakeDns
) -> None:
    ring = runtime.ring.get()
    alert = b"From: noreply@mail.example.test\r\nTo: x@elsewhere.example\r\nSubject: a\r\n\r\nb\r\n"
    foreign = b"From: someone@elsewhere.example\r\nSubject: a\r\n\r\nb\r\n"
    two_froms = b"From: a@example.test, b@example.test\r\nSubject: a\r\n\r\nb\r\n"
    with db.read_only(runtime.sessions) as session:
        keys = dkim_sign.signing_keys(
            session, ring, alert, now=NOW, errors=dkim_sign.ErrorThrottle()
        )
        assert {k.domain for k in keys} == {"example.test"}
        assert (
            dkim_sign.signing_keys(
                session, ring, foreign, now=NOW, errors=dkim_sign.ErrorThrottle()
            )
            == []
        )
        assert (
            dkim_sign.signing_keys(
                session, ring, two_froms, now=NOW, errors=dkim_sign.ErrorThrottle()
            )
            == []
        )
    signed = dkim_sign.sign(alert, keys)
    verifier = dkim.DKIM(signed)
    assert verifier.verify(idx=0, dnsfunc=zone.txt_lookup)
    assert verifier.verify(idx=1, dnsfunc=zone.txt_lookup)


def test_master_key_rotation_moves_dkim_keys(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str]
) -> None:
    result = run_sealgate(test_env, "keys", "rotate-master")
    assert result.returncode == 0, result.stderr
    ring = runtime.ring.get()
    with db.read_only(runtime.sessions) as session:
        rows = list(session.scalars(sa.select(DkimKey).options(sa.orm.joinedload(DkimKey.domain))))
        assert {r.master_version for r in rows} == {ring.primary} == {2}
        for row in rows:
            assert dkim_keys.open_key(ring.with_destroyed(1), row, row.domain.name).private


@pytest.mark.parametrize(
    "body",
    [b"line one\rline two\r\n", b"line one\nline two\r\n", b"no line end at the end"],
    ids=["bare-cr", "bare-lf", "no-final-crlf"],
)
def test_signature_covers_the_bytes_on_the_wire(
    runtime: Runtime,
    mail_users: dict[str, str],
    smarthost: FakeSmarthost,
    zone: FakeDns,
    body: bytes,
) -> None:
    """A stored message with a bare CR or LF (pass-through mail keeps its bytes) leaves with
    CRLF line ends, as SMTP DATA must carry it: the signature is made over those bytes, so
    it verifies at the receiver (signed over the stored bytes, a bare CR broke both)."""
    raw = (
        b"From: Alice <alice@example.test>\r\nTo: x@elsewhere.example\r\n"
        b"Subject: line ends\r\n\r\n" + body
    )
    with db.transaction(runtime.sessions) as session:
        outbound.enqueue(
            session,
            queue_id="QCR",
            mail_from=ALICE,
            rcpt_to="x@elsewhere.example",
            raw=raw,
            now=dt.datetime.now(dt.UTC),
        )
    [relayed] = relay_all(runtime, smarthost, 1)
    assert b"line" in relayed.content or b"no line end" in relayed.content
    sigs = signatures(relayed.content)
    assert len(sigs) == 2
    for index in range(len(sigs)):
        assert verifies(relayed.content, index, zone), f"signature {index}"


def test_converted_to_7bit_then_signed(
    runtime: Runtime, mail_users: dict[str, str], smarthost_factory: SmarthostFactory, zone: FakeDns
) -> None:
    """A relay without 8BITMIME gets 8-bit mail converted (RFC 6152 3); the signatures
    are made over the converted bytes, so they verify at the receiver."""
    raw = (
        b"From: Alice <alice@example.test>\r\nTo: x@elsewhere.example\r\n"
        b"Subject: umlauts\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
        b"\r\nGr\xc3\xbc\xc3\x9fe\r\n"
    )
    with db.transaction(runtime.sessions) as session:
        outbound.enqueue(
            session,
            queue_id="Q7B",
            mail_from=ALICE,
            rcpt_to="x@elsewhere.example",
            raw=raw,
            now=dt.datetime.now(dt.UTC),
        )
    [relayed] = relay_all(runtime, smarthost_factory(withhold=("8BITMIME",)), 1)
    assert relayed.content.isascii()
    assert b"Gr=C3=BC=C3=9Fe" in relayed.content
    assert_signed_and_aligned(relayed.content, zone)


def test_a_nul_converted_for_an_8bitmime_relay_then_signed(
    runtime: Runtime, mail_users: dict[str, str], smarthost: FakeSmarthost, zone: FakeDns
) -> None:
    """A NUL is not 8bit data (RFC 6152 2), so even a relay with 8BITMIME gets the part
    converted; the signatures are made over the converted bytes and verify."""
    raw = (
        b"From: Alice <alice@example.test>\r\nTo: x@elsewhere.example\r\n"
        b"Subject: a NUL\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
        b"\r\nGr\xc3\xbc\xc3\x9fe \x00\r\n"
    )
    with db.transaction(runtime.sessions) as session:
        outbound.enqueue(
            session,
            queue_id="Q8N",
            mail_from=ALICE,
            rcpt_to="x@elsewhere.example",
            raw=raw,
            now=dt.datetime.now(dt.UTC),
        )
    [relayed] = relay_all(runtime, smarthost, 1)
    assert b"\x00" not in relayed.content
    assert b"Gr=C3=BC=C3=9Fe =00" in relayed.content
    assert_signed_and_aligned(relayed.content, zone)


@pytest.mark.parametrize(
    ("hosted", "from_domain", "a_label"),
    [
        ("bücher.example", "bücher.example", "xn--bcher-kva.example"),
        ("bücher.example", "xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "bücher.example", "xn--bcher-kva.example"),
        # IDNA 2008: not strasse.example, another domain (IDNA 2003 mapped ß onto ss).
        ("straße.example", "straße.example", "xn--strae-oqa.example"),
        ("straße.example", "xn--strae-oqa.example", "xn--strae-oqa.example"),
    ],
    ids=["u-label", "a-label-from", "a-label-hosted", "sharp-s", "sharp-s-a-label-from"],
)
def test_an_internationalized_domain_is_signed_with_its_a_label(
    runtime: Runtime, hosted: str, from_domain: str, a_label: str
) -> None:
    """d= must be the domain's A-label (RFC 6376 §3.5, RFC 8616): signing a hosted
    IDN domain once failed on `encode("ascii")` and its mail left unsigned, and a
    From in the other form of the name found no key."""
    ring = runtime.ring.get()
    with db.transaction(runtime.sessions) as session:
        domain = accounts.add_domain(session, hosted, actor="test")
        txt = {
            f"{row.selector}._domainkey.{a_label}.": dkim_keys.txt_record(row)
            for row in dkim_keys.current_keys(session, domain.id)
        }
    raw = (
        f"From: Anna <anna@{from_domain}>\r\nTo: x@elsewhere.example\r\n"
        "Subject: Grüße\r\n\r\nbody\r\n"
    ).encode()
    with db.read_only(runtime.sessions) as session:
        keys = dkim_sign.signing_keys(session, ring, raw, now=NOW, errors=dkim_sign.ErrorThrottle())
    assert len(keys) == 2
    signed = dkim_sign.sign(raw, keys)
    sigs = signatures(signed)
    assert {s[b"d"] for s in sigs} == {a_label.encode("ascii")}

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        found = txt.get(name.decode("ascii").lower())
        return found.encode("ascii") if found is not None else None

    for index in range(len(sigs)):
        assert dkim.DKIM(signed).verify(idx=index, dnsfunc=lookup), f"signature {index}"
