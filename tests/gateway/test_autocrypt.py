"""Autocrypt Level 1 inbound, end to end (issue 13, Must show 2).

An external correspondent with a real gpg key writes to a hosted user through
the inbound (MX) listener, with a PGP/MIME signature and an `Autocrypt:` header.
The hosted user's next encrypted reply leaves through the relay as PGP/MIME that
the correspondent's gpg opens, and the delivery report names Autocrypt as where
the key came from. Later messages follow the spec's update rules (a newer Date
brings a new key, an older one changes nothing, a header whose addr is not the
From is ignored, a long run without a header stops the key's use); a header
that would displace an admin-imported key changes nothing.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import email
import email.policy
import email.utils
import smtplib
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import db, rawheaders
from gateway.autocrypt import peers
from gateway.inbound import InboundServer
from gateway.pipeline import pgpmime
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer
from keystore import directory, packets, pgp, store, untrusted
from keystore.models import AutocryptPeer
from tests.conftest import LoopThread
from tests.fakes.smarthost import FakeSmarthost, relay_settings_for
from tests.gateway.test_external_delivery import (
    inbox,
    keystore_public,
    open_with_gpg,
    relay,
    subkey_id,
)
from tests.gnupg import GnuPG
from tests.keystore.conftest import run_sealgate
from tests.keystore.gpgkeys import export, make_key, revoke_key

ALICE = "alice@example.test"
CAROL, DAVE, MALLORY = "carol@partner.example", "dave@partner.example", "mallory@partner.example"
NOW = dt.datetime.now(dt.UTC)


@pytest.fixture(autouse=True)
def _now() -> None:
    """Each test's "now" is taken when it starts: keys the test makes with GnuPG are
    created then, and a clock fixed at import (minutes earlier in a loaded suite) would
    see them as made in the future."""
    global NOW
    NOW = dt.datetime.now(dt.UTC)


@pytest.fixture
def partner(tmp_path: Path) -> GnuPG:
    home = tmp_path / "partner"
    home.mkdir(mode=0o700)
    return GnuPG(home)


@pytest.fixture
def rt(runtime: Runtime, smarthost: FakeSmarthost, mail_users: dict[str, str]) -> Runtime:
    """Relaying to the fake smarthost; no WKD (DNS is outside the machine): a recipient
    without an imported or Autocrypt key gets a secure page."""
    settings = relay_settings_for(runtime.settings, smarthost).replace(keys={"wkd": False})
    return dataclasses.replace(runtime, settings=settings)


@pytest.fixture
def servers(
    rt: Runtime, loop_thread: LoopThread
) -> Iterator[tuple[InboundServer, SubmissionServer]]:
    inbound, submission = InboundServer(rt), SubmissionServer(rt)
    loop_thread.run(inbound.start())
    loop_thread.run(submission.start())
    yield inbound, submission
    loop_thread.run(inbound.stop(grace=5))
    loop_thread.run(submission.stop(grace=5))


def autocrypt_header(addr: str, key: bytes) -> str:
    keydata = base64.b64encode(key).decode()
    folded = "\r\n ".join(keydata[i : i + 70] for i in range(0, len(keydata), 70))
    return f"Autocrypt: addr={addr}; prefer-encrypt=mutual; keydata=\r\n {folded}\r\n"


def signed_mail(
    gpg: GnuPG, sender: str, fingerprint: str, *, date: dt.datetime, autocrypt: str = ""
) -> bytes:
    """A PGP/MIME signed message (RFC 3156 §5) from `sender`, made with gpg."""
    body = b"Content-Type: text/plain; charset=utf-8\r\n\r\nHello Alice, write back encrypted.\r\n"
    signature = gpg.run("--armor", "--detach-sign", "--local-user", fingerprint, input=body).stdout
    return (
        (
            f"From: {sender}\r\nTo: {ALICE}\r\nSubject: hello\r\n"
            f"Date: {email.utils.format_datetime(date)}\r\n"
            f"Message-ID: <{date.timestamp()}@partner.example>\r\n{autocrypt}"
            "MIME-Version: 1.0\r\n"
            "Content-Type: multipart/signed; micalg=pgp-sha512;"
            ' protocol="application/pgp-signature"; boundary="sig"\r\n\r\n--sig\r\n'
        ).encode()
        + body
        + (b"--sig\r\nContent-Type: application/pgp-signature\r\n\r\n" + signature + b"--sig--\r\n")
    )


def deliver_inbound(inbound: InboundServer, ctx: ssl.SSLContext, sender: str, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", inbound.port, timeout=60) as client:
        client.starttls(context=ctx)
        assert client.sendmail(sender, [ALICE], raw) == {}


def reply(
    rt: Runtime,
    submission: SubmissionServer,
    ctx: ssl.SSLContext,
    password: str,
    to: str,
    smarthost: FakeSmarthost,
) -> bytes:
    """Alice's encrypted reply to `to`; returns what reached the smarthost for them."""
    raw = (
        f"From: {ALICE}\r\nTo: {to}\r\nSubject: Re: hello\r\nX-Sealgate-Encrypt: yes\r\n"
        "\r\nThe secret answer.\r\n"
    ).encode()
    already = len(smarthost.messages)
    with smtplib.SMTP_SSL("127.0.0.1", submission.tls_port, context=ctx, timeout=60) as client:
        client.login(ALICE, password)
        assert client.sendmail(ALICE, [to], raw) == {}
    copies = relay(rt, smarthost, already + 1)
    return copies[to].content if to in copies else smarthost.messages[-1].content


def last_report(rt: Runtime) -> str:
    """The newest delivery report in Alice's INBOX, decrypted with her key."""
    reports = [m for m in inbox(rt, ALICE) if b"Subject: Delivery report" in m.raw]
    assert reports, "no delivery report"
    payload = pgpmime.encrypted_payload(reports[-1].raw)
    assert payload is not None
    with db.read_only(rt.sessions) as session:
        opened = store.decrypt_for(session, rt.ring.get(), ALICE, payload)
    return opened.data.decode()


def peer_row(rt: Runtime, address: str) -> AutocryptPeer | None:
    with db.read_only(rt.sessions) as session:
        return peers.peer(session, address)


def encrypted_to_key(raw: bytes) -> frozenset[str]:
    payload = pgpmime.encrypted_payload(raw)
    assert payload is not None
    return packets.recipient_key_ids(payload)


def encrypted_to(rt: Runtime, raw: bytes) -> frozenset[str]:
    """The recipients' key ids, the sender's own (for her Sent copy) left out."""
    payload = pgpmime.encrypted_payload(raw)
    assert payload is not None
    return packets.recipient_key_ids(payload) - set(keystore_public(rt, ALICE).subkey_ids)


def test_autocrypt_key_is_used_for_the_reply_and_follows_the_update_rules(
    rt: Runtime,
    servers: tuple[InboundServer, SubmissionServer],
    smarthost: FakeSmarthost,
    partner: GnuPG,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    inbound, submission = servers
    ctx, password = client_ssl_context, mail_users[ALICE]
    first = make_key(partner, f"Carol <{CAROL}>")
    first_date = NOW - dt.timedelta(days=60)
    raw = signed_mail(
        partner,
        CAROL,
        first,
        date=first_date,
        autocrypt=autocrypt_header(CAROL, export(partner, first)),
    )
    deliver_inbound(inbound, ctx, CAROL, raw)
    row = peer_row(rt, CAROL)
    assert row is not None and row.fingerprint == first
    assert row.autocrypt_timestamp == row.last_seen == first_date.replace(microsecond=0)
    assert row.prefer_encrypt == "mutual"
    assert any(b"Hello Alice" in m.raw for m in inbox(rt, ALICE))  # the mail itself is kept

    # The reply: PGP/MIME to Carol's Autocrypt key, opened by her gpg; the report says so.
    relayed = reply(rt, submission, ctx, password, CAROL, smarthost)
    with db.read_only(rt.sessions) as session:
        partner.import_key(store.export_public(session, ALICE).encode())
    inner = open_with_gpg(partner, relayed, keystore_public(rt, ALICE))
    assert "The secret answer." in inner.get_content()
    assert encrypted_to(rt, relayed) == {subkey_id(partner, first)}
    report = last_report(rt)
    assert "from their Autocrypt header" in report and first[:4] in report

    # A newer message with another key: the new key replaces the old one.
    second = make_key(partner, f"Carol New <{CAROL}>")
    second_date = NOW - dt.timedelta(days=50)
    deliver_inbound(
        inbound,
        ctx,
        CAROL,
        signed_mail(
            partner,
            CAROL,
            second,
            date=second_date,
            autocrypt=autocrypt_header(CAROL, export(partner, second)),
        ),
    )
    row = peer_row(rt, CAROL)
    assert row is not None and row.fingerprint == second
    assert encrypted_to(rt, reply(rt, submission, ctx, password, CAROL, smarthost)) == {
        subkey_id(partner, second)
    }

    # An older message (it arrives late) with a third key changes nothing.
    third = make_key(partner, f"Carol Old <{CAROL}>")
    deliver_inbound(
        inbound,
        ctx,
        CAROL,
        signed_mail(
            partner,
            CAROL,
            third,
            date=NOW - dt.timedelta(days=55),
            autocrypt=autocrypt_header(CAROL, export(partner, third)),
        ),
    )
    after = peer_row(rt, CAROL)
    assert after is not None
    assert (after.fingerprint, after.autocrypt_timestamp, after.last_seen) == (
        second,
        second_date.replace(microsecond=0),
        second_date.replace(microsecond=0),
    )

    # A header whose addr is not the From: ignored, as if there were none. The message
    # still counts as seen (last_seen moves), the key stays.
    mallory = make_key(partner, f"Mallory <{MALLORY}>")
    seen_date = NOW - dt.timedelta(days=45)
    deliver_inbound(
        inbound,
        ctx,
        CAROL,
        signed_mail(
            partner,
            CAROL,
            mallory,
            date=seen_date,
            autocrypt=autocrypt_header(MALLORY, export(partner, mallory)),
        ),
    )
    after = peer_row(rt, CAROL)
    assert after is not None and after.fingerprint == second
    assert after.autocrypt_timestamp == second_date.replace(microsecond=0)
    assert after.last_seen == seen_date.replace(microsecond=0)
    assert peer_row(rt, MALLORY) is None

    # Mail without a header for more than 35 days after the last one with it: the
    # spec's "reset"; the key is kept but not used, the reply goes as a secure page.
    deliver_inbound(inbound, ctx, CAROL, signed_mail(partner, CAROL, second, date=NOW))
    after = peer_row(rt, CAROL)
    assert after is not None and after.fingerprint == second and peers.is_reset(after)
    relayed = reply(rt, submission, ctx, password, CAROL, smarthost)
    assert rawheaders.get(relayed, "Content-Type") is not None
    assert b"multipart/encrypted" not in relayed.split(b"\r\n\r\n", 1)[0]
    assert "secure page" in last_report(rt)

    # A header again: the key is in use again.
    deliver_inbound(
        inbound,
        ctx,
        CAROL,
        signed_mail(
            partner,
            CAROL,
            second,
            date=NOW,
            autocrypt=autocrypt_header(CAROL, export(partner, second)),
        ),
    )
    assert encrypted_to(rt, reply(rt, submission, ctx, password, CAROL, smarthost)) == {
        subkey_id(partner, second)
    }


def test_an_autocrypt_header_never_displaces_an_imported_key(
    rt: Runtime,
    servers: tuple[InboundServer, SubmissionServer],
    smarthost: FakeSmarthost,
    partner: GnuPG,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    inbound, submission = servers
    imported = make_key(partner, f"Dave <{DAVE}>")
    vetting = untrusted.vet_keys(
        export(partner, imported), NOW, untrusted.Budget(64 * 1024, 10.0, 256)
    )
    with db.transaction(rt.sessions) as session:
        for vetted in vetting.accepted:
            directory.save(session, vetted, "import", NOW, events=lambda *a: None)

    other = make_key(partner, f"Dave Elsewhere <{DAVE}>")
    deliver_inbound(
        inbound,
        client_ssl_context,
        DAVE,
        signed_mail(
            partner, DAVE, other, date=NOW, autocrypt=autocrypt_header(DAVE, export(partner, other))
        ),
    )
    assert peer_row(rt, DAVE) is None
    relayed = reply(rt, submission, client_ssl_context, mail_users[ALICE], DAVE, smarthost)
    assert encrypted_to(rt, relayed) == {subkey_id(partner, imported)}


def test_visible_recipients_are_gossiped_inside_the_encryption_bcc_never(
    rt: Runtime,
    servers: tuple[InboundServer, SubmissionServer],
    smarthost: FakeSmarthost,
    partner: GnuPG,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    """Autocrypt Level 1 §2.7: a copy to several recipients carries, inside its encrypted
    part, an `Autocrypt-Gossip:` header with each visible recipient's key."""
    inbound, submission = servers
    keys = {}
    for who in (CAROL, DAVE, MALLORY):
        keys[who] = make_key(partner, f"<{who}>")
        header = autocrypt_header(who, export(partner, keys[who]))
        deliver_inbound(
            inbound,
            client_ssl_context,
            who,
            signed_mail(partner, who, keys[who], date=NOW, autocrypt=header),
        )
    raw = (
        f"From: {ALICE}\r\nTo: {CAROL}, bob@example.test\r\nCc: {DAVE}\r\nBcc: {MALLORY}\r\n"
        "Subject: plans\r\nX-Sealgate-Encrypt: yes\r\n\r\nThe plan.\r\n"
    ).encode()
    rcpts = [CAROL, "bob@example.test", DAVE, MALLORY]
    with smtplib.SMTP_SSL(
        "127.0.0.1", submission.tls_port, context=client_ssl_context, timeout=60
    ) as client:
        client.login(ALICE, mail_users[ALICE])
        assert client.sendmail(ALICE, rcpts, raw) == {}
    copies = relay(rt, smarthost, 3)
    with db.read_only(rt.sessions) as session:
        partner.import_key(store.export_public(session, ALICE).encode())
    alice = keystore_public(rt, ALICE)
    bob = keystore_public(rt, "bob@example.test")

    visible = open_with_gpg(partner, copies[CAROL].content, alice)
    gossip = {}
    for value in visible.get_all("Autocrypt-Gossip") or []:
        fields = dict(
            part.strip().split("=", 1) for part in "".join(str(value).split()).split(";") if part
        )
        gossip[fields["addr"]] = pgp.parse_public_key(base64.b64decode(fields["keydata"]))
    assert set(gossip) == {CAROL, DAVE, "bob@example.test"}
    assert gossip[CAROL].fingerprint == keys[CAROL]
    assert gossip[DAVE].fingerprint == keys[DAVE]
    assert gossip["bob@example.test"].fingerprint == bob.fingerprint
    # Nothing about the Bcc recipient anywhere in the visible copy, nor gossip outside.
    assert MALLORY.encode() not in copies[CAROL].content
    assert rawheaders.get(copies[CAROL].content, "Autocrypt-Gossip") is None
    hidden = open_with_gpg(partner, copies[MALLORY].content, alice)
    assert hidden.get_all("Autocrypt-Gossip") is None


def test_the_admin_sees_autocrypt_keys_with_the_external_ones(
    rt: Runtime,
    servers: tuple[InboundServer, SubmissionServer],
    partner: GnuPG,
    client_ssl_context: ssl.SSLContext,
    test_env: dict[str, str],
) -> None:
    inbound, _submission = servers
    carol = make_key(partner, f"<{CAROL}>")
    header = autocrypt_header(CAROL, export(partner, carol))
    deliver_inbound(
        inbound,
        client_ssl_context,
        CAROL,
        signed_mail(partner, CAROL, carol, date=NOW, autocrypt=header),
    )
    listed = run_sealgate(test_env, "keys", "list-external", CAROL)
    assert listed.returncode == 0, listed.stderr
    (row,) = [line.split("\t") for line in listed.stdout.splitlines()[1:]]
    assert row[:3] == [CAROL, carol, "autocrypt"] and row[-1] == "in use"


def test_headers_naming_a_hosted_address_change_nothing(
    rt: Runtime,
    servers: tuple[InboundServer, SubmissionServer],
    smarthost: FakeSmarthost,
    partner: GnuPG,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    """A hosted address's key is the keystore's. Neither mail between hosted users (whose
    mail program may add its own header) nor outside mail forging a hosted From changes
    it or makes peer state."""
    inbound, submission = servers
    bob = "bob@example.test"
    foreign = make_key(partner, f"<{bob}>")
    header = autocrypt_header(bob, export(partner, foreign))
    before = keystore_public(rt, bob).fingerprint
    deliver_inbound(
        inbound,
        client_ssl_context,
        bob,
        signed_mail(partner, bob, foreign, date=NOW, autocrypt=header),
    )
    raw = (
        f"From: {bob}\r\nTo: {ALICE}\r\nSubject: hi\r\n{header}"
        "X-Sealgate-Encrypt: yes\r\n\r\nhi\r\n"
    ).encode()
    with smtplib.SMTP_SSL(
        "127.0.0.1", submission.tls_port, context=client_ssl_context, timeout=60
    ) as client:
        client.login(bob, mail_users[bob])
        assert client.sendmail(bob, [ALICE], raw) == {}
    assert peer_row(rt, bob) is None
    assert keystore_public(rt, bob).fingerprint == before
    # Alice's reply to Bob is encrypted to his keystore key, stored in his mailbox.
    reply_raw = (
        f"From: {ALICE}\r\nTo: {bob}\r\nSubject: Re: hi\r\nX-Sealgate-Encrypt: yes\r\n\r\nok\r\n"
    ).encode()
    with smtplib.SMTP_SSL(
        "127.0.0.1", submission.tls_port, context=client_ssl_context, timeout=60
    ) as client:
        client.login(ALICE, mail_users[ALICE])
        assert client.sendmail(ALICE, [bob], reply_raw) == {}
    (stored,) = [m for m in inbox(rt, bob) if m.encrypted]
    assert encrypted_to_key(stored.raw) == set(keystore_public(rt, bob).subkey_ids) | set(
        keystore_public(rt, ALICE).subkey_ids
    )


def plain_mail(sender: str, date: dt.datetime, autocrypt: str) -> bytes:
    return (
        f"From: {sender}\r\nTo: {ALICE}\r\nSubject: hello\r\n"
        f"Date: {email.utils.format_datetime(date)}\r\n"
        f"Message-ID: <{date.timestamp()}@partner.example>\r\n{autocrypt}"
        "\r\nHello Alice.\r\n"
    ).encode()


def test_a_key_first_seen_revoked_in_a_header_stays_revoked(
    rt: Runtime,
    servers: tuple[InboundServer, SubmissionServer],
    smarthost: FakeSmarthost,
    partner: GnuPG,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    test_env: dict[str, str],
) -> None:
    """Threat: a copy of a correspondent's key made before its revocation (a replayed
    old message, a forger who kept it) brings a key the gateway has already seen
    revoked back into use. The revocation is the first the gateway learns of the key,
    so no row holds the key to mark: a revoked row is left for it all the same."""
    inbound, submission = servers
    carol = make_key(partner, f"Carol <{CAROL}>")
    old_copy = export(partner, carol)
    revoked = revoke_key(partner, carol)
    deliver_inbound(
        inbound,
        client_ssl_context,
        CAROL,
        plain_mail(CAROL, NOW - dt.timedelta(days=2), autocrypt_header(CAROL, revoked)),
    )
    deliver_inbound(
        inbound,
        client_ssl_context,
        CAROL,
        plain_mail(CAROL, NOW - dt.timedelta(days=1), autocrypt_header(CAROL, old_copy)),
    )
    with db.read_only(rt.sessions) as session:
        assert directory.is_revoked(session, carol)
        assert peers.usable_key(session, CAROL, NOW) is None
    relayed = reply(rt, submission, client_ssl_context, mail_users[ALICE], CAROL, smarthost)
    assert pgpmime.encrypted_payload(relayed) is None
    assert "secure page" in last_report(rt)
    # The admin sees the revocation among Carol's keys, learnt from her header.
    listed = run_sealgate(test_env, "keys", "list-external", CAROL)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split("\t") for line in listed.stdout.splitlines()[1:]]
    assert [(r[1], r[2], r[-1]) for r in rows] == [(carol, "autocrypt", "revoked")]
