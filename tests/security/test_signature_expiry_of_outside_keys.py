"""Threat: an outside key whose self-signature or subkey binding carries its own expiry.

A signature may say when it stops holding (Signature Expiration Time, RFC 9580
section 5.2.3.18), apart from the key's own expiry. Key vetting checked that the
signatures it used still held, but recorded as the key's end only the key
expiration times: a key whose binding signature ran out an hour (or a second) after
it was vetted was stored as valid for ever. Sequoia, which encrypts every message,
then refused it, the submission pipeline raised, and every message to that
correspondent (and to every group naming them) was answered `451` until the key
changed. Anyone can plant such a key for an external address with one forged
`Autocrypt:` header (docs/autocrypt.md), so this was a denial of service against
all mail to that address.

Now a vetted key's `expires_at` is the earliest of the key's, the user id
self-signature's and the binding signature's expiry, so the stored key stops being
used exactly when Sequoia stops taking it, and the message goes as a secure page.
The keys are made with pgpy, which writes a signature expiry on a self-signature
(GnuPG does not); they are vetted in the sandbox as every outside key is.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import smtplib
import ssl
import time
import warnings

import pytest
import sqlalchemy as sa

from gateway import db
from gateway.inbound import InboundServer
from gateway.pipeline import pgpmime
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer
from keystore import directory, messages, pgp, untrusted
from keystore.models import ExternalKey
from tests.fakes.smarthost import FakeSmarthost
from tests.gateway.test_autocrypt import (  # noqa: F401  (fixtures)
    ALICE,
    autocrypt_header,
    deliver_inbound,
    last_report,
    peer_row,
    reply,
    rt,
    servers,
)
from tests.keystore.conftest import audit_sink

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import pgpy
    from pgpy.constants import (
        CompressionAlgorithm,
        EllipticCurveOID,
        HashAlgorithm,
        KeyFlags,
        PubKeyAlgorithm,
        SymmetricKeyAlgorithm,
    )

CAROL = "carol@partner.example"
BUDGET = untrusted.Budget(max_bytes=512 * 1024, timeout=10.0, memory_mb=256)
MADE_AGO = dt.timedelta(hours=1)


def carol_key(
    now: dt.datetime,
    *,
    binding_ends: dt.datetime | None = None,
    user_id_ends: dt.datetime | None = None,
    key_ends: dt.datetime | None = None,
) -> bytes:
    """Carol's public key, made an hour before `now`, whose signatures end when asked.

    pgpy counts a signature's expiry from the key's creation (not the signature's),
    so every signature here is made at the key's creation time.
    """
    made = (now - MADE_AGO).replace(microsecond=0)

    def lasting(until: dt.datetime | None) -> dict[str, dt.timedelta]:
        return {} if until is None else {"expires": until - made}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        primary = pgpy.PGPKey.new(PubKeyAlgorithm.EdDSA, EllipticCurveOID.Ed25519, created=made)
        primary.add_uid(
            pgpy.PGPUID.new(f"Carol <{CAROL}>"),
            usage={KeyFlags.Certify, KeyFlags.Sign},
            hashes=[HashAlgorithm.SHA512],
            ciphers=[SymmetricKeyAlgorithm.AES256],
            compression=[CompressionAlgorithm.Uncompressed],
            created=made,
            **({} if key_ends is None else {"key_expiration": key_ends - made}),
            **lasting(user_id_ends),
        )
        subkey = pgpy.PGPKey.new(PubKeyAlgorithm.ECDH, EllipticCurveOID.Curve25519, created=made)
        primary.add_subkey(
            subkey,
            usage={KeyFlags.EncryptCommunications, KeyFlags.EncryptStorage},
            created=made,
            **lasting(binding_ends),
        )
        return bytes(primary.pubkey)


def vet(data: bytes, now: dt.datetime) -> pgp.VettedKey:
    vetting = untrusted.vet_keys(data, now, BUDGET, address=CAROL)
    assert vetting.rejected == ()
    (vetted,) = vetting.accepted
    return vetted


@pytest.mark.parametrize("signature", ["binding", "user id"])
def test_a_signature_expiry_ends_the_vetted_key(signature: str) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    ends = now + dt.timedelta(hours=2)
    which = "binding_ends" if signature == "binding" else "user_id_ends"
    vetted = vet(carol_key(now, **{which: ends}), now)
    assert vetted.expires_at == ends


def test_the_earliest_end_wins() -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    hour = dt.timedelta(hours=1)
    data = carol_key(
        now, binding_ends=now + 3 * hour, user_id_ends=now + 2 * hour, key_ends=now + 4 * hour
    )
    assert vet(data, now).expires_at == now + 2 * hour
    data = carol_key(now, binding_ends=now + 3 * hour, key_ends=now + hour)
    assert vet(data, now).expires_at == now + hour


def test_sequoia_takes_the_key_until_the_end_and_not_after() -> None:
    """The premise: Sequoia, which encrypts, honours the binding's expiry on the wall clock."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    vetted = vet(carol_key(now, binding_ends=now + dt.timedelta(seconds=3)), now)
    assert messages.can_encrypt_to(vetted.data)
    time.sleep(max(0.0, (now + dt.timedelta(seconds=4) - dt.datetime.now(dt.UTC)).total_seconds()))
    assert not messages.can_encrypt_to(vetted.data)


def test_a_planted_autocrypt_key_that_runs_out_never_blocks_mail_to_the_address(
    rt: Runtime,  # noqa: F811
    servers: tuple[InboundServer, SubmissionServer],  # noqa: F811
    smarthost: FakeSmarthost,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    """A forged mail "from Carol" plants a key whose binding ends seconds later; Alice's
    encrypted mail to Carol after that is accepted and goes as a secure page (before:
    `451` on every attempt)."""
    inbound, submission = servers
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    ends = now + dt.timedelta(seconds=5)
    forged = (
        f"From: {CAROL}\r\nTo: {ALICE}\r\nSubject: hello\r\n"
        f"Date: {email.utils.format_datetime(now)}\r\n"
        f"{autocrypt_header(CAROL, carol_key(now, binding_ends=ends))}"
        "\r\nHello.\r\n"
    ).encode()
    deliver_inbound(inbound, client_ssl_context, CAROL, forged)
    row = peer_row(rt, CAROL)
    assert row is not None and row.fingerprint is not None  # the key was taken
    assert row.expires_at is not None and row.expires_at.replace(tzinfo=dt.UTC) == ends

    time.sleep(max(0.0, (ends - dt.datetime.now(dt.UTC)).total_seconds() + 1))
    try:
        copy = reply(rt, submission, client_ssl_context, mail_users[ALICE], CAROL, smarthost)
    except smtplib.SMTPDataError as exc:
        pytest.fail(f"the message was refused: {exc.smtp_code} {exc.smtp_error!r}")
    assert pgpmime.encrypted_payload(copy) is None
    assert b"The secret answer." not in copy
    assert "secure page" in last_report(rt)


def test_a_stored_key_that_sequoia_no_longer_takes_is_passed_over(
    rt: Runtime,  # noqa: F811
    servers: tuple[InboundServer, SubmissionServer],  # noqa: F811
    smarthost: FakeSmarthost,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    """The backstop for keys stored before vetting knew of signature expiry (or any
    other point where key vetting and Sequoia part ways): a stored key Sequoia refuses
    when the message is encrypted is not used, and the message goes as a secure page
    instead of failing with `451`."""
    _inbound, submission = servers
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    ends = now + dt.timedelta(seconds=3)
    vetted = vet(carol_key(now, binding_ends=ends), now)
    with db.transaction(rt.sessions) as session:
        directory.save(session, vetted, "import", now, events=audit_sink)
        # As the vetting before signature expiry stored it: valid for ever.
        session.execute(sa.update(ExternalKey).values(expires_at=None))

    time.sleep(max(0.0, (ends - dt.datetime.now(dt.UTC)).total_seconds() + 1))
    try:
        copy = reply(rt, submission, client_ssl_context, mail_users[ALICE], CAROL, smarthost)
    except smtplib.SMTPDataError as exc:
        pytest.fail(f"the message was refused: {exc.smtp_code} {exc.smtp_error!r}")
    assert pgpmime.encrypted_payload(copy) is None
    assert b"The secret answer." not in copy
    assert "secure page" in last_report(rt)
