"""Threat (to availability): sound keys of correspondents refused because pgpy rewrites them.

pgpy knows one bit of the Features subpacket (0x01, MDC) and drops the others when it
writes a signature back out. Key vetting checks self-signatures over pgpy's rewrite,
so every key advertising another feature (Sequoia's SEIPDv2, 0x08; GnuPG 2.3 and
later, AEAD, 0x02) failed with "the user id ... has no valid self-signature": the
correspondent never got PGP/MIME, always a secure page, and the admin was told a
wrong reason. The minimal re-serialisation that is stored carried the rewrite too, so
Sequoia would have refused it anyway. Now the subpacket keeps the octets it was read
from, and such keys are vetted on what their owner signed.
"""

from __future__ import annotations

import datetime as dt

import pysequoia

from keystore import messages, pgp, untrusted
from tests.keystore.gpgkeys import packets

CAROL = "carol@partner.example"
BUDGET = untrusted.Budget(max_bytes=512 * 1024, timeout=10.0, memory_mb=256)
FEATURES = 30


def features_of(data: bytes) -> set[bytes]:
    """The Features subpacket bodies in the hashed areas of `data`'s v4 signatures."""
    found = set()
    for packet in packets(data):
        if packet.tag != 2:
            continue
        body = packet.raw[packet.raw.index(b"\x04", 1) :]  # version 4 onwards
        hashed = int.from_bytes(body[4:6], "big")
        area, i = body[6 : 6 + hashed], 0
        while i < len(area):
            length = area[i]  # one-octet lengths: every subpacket here is short
            if area[i + 1] & 0x7F == FEATURES:
                found.add(bytes(area[i + 2 : i + 1 + length]))
            i += 1 + length
    return found


def test_a_key_made_by_sequoia_is_vetted_and_keeps_its_features() -> None:
    tsk = pysequoia.Tsk.generate(f"Carol <{CAROL}>", profile=pysequoia.Profile.RFC4880)
    cert = tsk.extract_certificate()
    data = bytes(cert)
    assert features_of(data) == {b"\x09"}  # MDC and SEIPDv2: the shape is really there
    vetting = untrusted.vet_keys(data, dt.datetime.now(dt.UTC), BUDGET, address=CAROL)
    assert vetting.rejected == ()
    (vetted,) = vetting.accepted
    assert vetted.fingerprint == cert.fingerprint.upper()
    assert features_of(vetted.data) == {b"\x09"}
    assert messages.can_encrypt_to(vetted.data)


def test_mail_encrypted_to_the_vetted_key_opens_with_the_owners_secret_key() -> None:
    tsk = pysequoia.Tsk.generate(f"Carol <{CAROL}>", profile=pysequoia.Profile.RFC4880)
    data = bytes(tsk.extract_certificate())
    (vetted,) = untrusted.vet_keys(data, dt.datetime.now(dt.UTC), BUDGET, address=CAROL).accepted
    ciphertext = messages.encrypt(b"figures", [pgp.parse_public_key(vetted.data)], None)
    assert pysequoia.decrypt(ciphertext, tsk.decryptor()).bytes == b"figures"
