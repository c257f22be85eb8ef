"""Threat: body text in the clear outer headers of an encrypted copy, and a copy the
recipient's client cannot show.

Shapes that once broke it (issue 10): the pipeline's header copy and the MIME parser
split headers from body differently, so a first line that is not a header field, no
empty line before the body, a bare-LF separator, a whitespace-only "empty" line, or
CR CR LF put body lines into the outer headers, in clear. Each shape goes here over
real SMTP (raw DATA, line ends as drawn) to a hosted recipient and to an external key
holder whose key GnuPG made; GnuPG decrypts the relayed copy, the keystore the hosted
one. Every line of text is inside, none outside, and the outer message is RFC 3156.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import smtplib
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway import db
from gateway.models import Address, MailboxMessage
from gateway.pipeline import pgpmime
from gateway.relay import Relay
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer
from gateway.timeutil import utcnow
from keystore import directory, pgp, store
from keystore.models import SOURCE_IMPORT
from tests.conftest import LoopThread
from tests.fakes.smarthost import FakeSmarthost, relay_settings_for
from tests.gnupg import GnuPG
from tests.keystore.gpgkeys import export, make_key
from tests.openpgp import decrypt

ALICE, BOB, CAROL = "alice@example.test", "bob@example.test", "carol@partner.example"
HEAD = [b"From: alice@example.test", b"To: bob@example.test, carol@partner.example"]
TEXT = [b"Dear Bob, the figures:", b"Zq-line-one 1234", b"Remark: Zq-line-two", b"Bye for now."]

SHAPES: dict[str, bytes] = {
    "first line not a header field": b"\r\n".join([TEXT[0], *HEAD, b"", *TEXT[1:]]),
    "no empty line before the body": b"\r\n".join([*HEAD, *TEXT]),
    "bare-LF separator": b"\r\n".join(HEAD) + b"\r\n\n" + b"\r\n".join(TEXT),
    "whitespace-only line": b"\r\n".join([*HEAD, b" ", *TEXT]),
    "CR CR LF": b"\r\n".join(HEAD) + b"\r\n\r\r\n" + b"\r\n".join(TEXT),
    "mixed line ends": b"\n".join(HEAD) + b"\r\n" + b"\n\r\n".join([b"", *TEXT]),
}


@pytest.fixture
def partner(tmp_path: Path) -> GnuPG:
    home = tmp_path / "partner"
    home.mkdir(mode=0o700)
    return GnuPG(home)


@pytest.fixture
def rt(
    runtime: Runtime, smarthost: FakeSmarthost, mail_users: dict[str, str], partner: GnuPG
) -> Runtime:
    """Relaying to the fake smarthost; Carol's GnuPG key imported; every message encrypted."""
    now = utcnow()
    fingerprint = make_key(partner, CAROL)
    vetting = pgp.vet_public_keys(export(partner, fingerprint), now, address=CAROL)
    with db.transaction(runtime.sessions) as session:
        directory.save(session, vetting.accepted[0], SOURCE_IMPORT, now, events=_no_events)
    settings = relay_settings_for(runtime.settings, smarthost, timeout=120.0).replace(
        keys={"wkd": False}
    )
    return dataclasses.replace(runtime, settings=settings)


@pytest.fixture
def server(rt: Runtime, loop_thread: LoopThread) -> Iterator[SubmissionServer]:
    smtp = SubmissionServer(rt)
    loop_thread.run(smtp.start())
    yield smtp
    loop_thread.run(smtp.stop(grace=5))


def send_raw(client: smtplib.SMTP, raw: bytes) -> None:
    """DATA as raw bytes: smtplib's sendmail would make every line end CRLF."""
    assert client.mail(ALICE)[0] == 250
    for rcpt in (BOB, CAROL):
        assert client.rcpt(rcpt)[0] == 250
    assert client.docmd("DATA")[0] == 354
    client.send(raw + b"\r\n.\r\n")
    code, reply = client.getreply()
    assert code == 250, reply


def _no_events(session: object, action: str, target: str, detail: str) -> None:
    """Key events of the setup are not under test."""


def test_every_shape_is_valid_pgp_mime_with_all_text_inside(
    rt: Runtime,
    server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    smarthost: FakeSmarthost,
    loop_thread: LoopThread,
    partner: GnuPG,
) -> None:
    with smtplib.SMTP_SSL(
        "127.0.0.1", server.tls_port, context=client_ssl_context, timeout=60
    ) as client:
        client.login(ALICE, mail_users[ALICE])
        for shape in SHAPES.values():
            # The trigger is the subject tag, in a field every shape keeps in the header.
            send_raw(client, b"Subject: [encrypt] figures\r\n" + shape)
    loop_thread.run(Relay(rt).sweep())
    relayed = smarthost.wait_for(len(SHAPES))
    with db.transaction(rt.sessions) as session:
        hosted = list(
            session.scalars(
                sa.select(MailboxMessage.raw)
                .join(Address, MailboxMessage.address_id == Address.id)
                .where(Address.address == BOB)
                .order_by(MailboxMessage.id)
            )
        )
        bob_keys = store.secret_keys_for_decryption(session, rt.ring.get(), BOB)
        partner.import_key(store.export_public(session, ALICE).encode())
    by_carol = [m.content for m in relayed]
    assert len(hosted) == len(by_carol) == len(SHAPES)

    for name, to_bob, to_carol in zip(SHAPES, hosted, by_carol, strict=True):
        # The relayed copy also carries the relay's DKIM signatures (hashes, no text).
        for raw, outside in ((to_bob, set()), (to_carol, {"autocrypt", "dkim-signature"})):
            outer = email.message_from_bytes(raw, policy=email.policy.default)
            assert outer.get_content_type() == "multipart/encrypted", name
            assert not outer.defects, (name, outer.defects)
            clear = {n.lower() for n in outer.keys()}  # noqa: SIM118
            assert clear <= pgpmime.OUTSIDE | {"mime-version", "content-type"} | outside, name
            for line in TEXT:
                assert line not in raw, (name, line)
        payload = pgpmime.encrypted_payload(to_carol)
        assert payload is not None
        opened = partner.run("--status-fd", "2", "--decrypt", input=payload)
        assert b"[GNUPG:] GOODSIG" in opened.stderr, name
        by_gnupg = opened.stdout
        by_keystore = decrypt(pgpmime.encrypted_payload(to_bob) or b"", bob_keys).data
        for inner in (by_gnupg, by_keystore):
            for line in TEXT:
                assert line in inner, (name, line)
            assert email.message_from_bytes(inner).get_content_type() == "text/plain", name
