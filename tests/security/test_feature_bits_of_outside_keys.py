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
import hashlib

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


KEY_FLAGS = 27


def _with_key_flags(secret: pgp.SecretKey, flags: bytes) -> bytes:
    """`secret`'s public key whose subkey binding says Key Flags `flags` (RFC 9580 section
    5.2.3.29: more octets than pgpy knows), signed again by the primary key: what
    another implementation writes for flags in a second octet."""
    primary, uid, uid_sig, subkey, binding = packets(secret.public.to_bytes())
    body = binding.raw[2:]  # one-octet new-format length: the binding is short
    hashed_length = int.from_bytes(body[4:6], "big")
    hashed, rest = body[6 : 6 + hashed_length], body[6 + hashed_length :]
    assert b"\x02\x1b\x0c" in hashed  # the flags pgpy wrote: encrypt communications, storage
    hashed = hashed.replace(b"\x02\x1b\x0c", bytes([1 + len(flags), KEY_FLAGS]) + flags)
    unhashed_length = int.from_bytes(rest[:2], "big")
    unhashed = rest[: 2 + unhashed_length]
    head = body[:4] + len(hashed).to_bytes(2, "big") + hashed
    digest = hashlib.sha512()
    for key in (primary, subkey):
        key_body = key.raw[2:]
        digest.update(b"\x99" + len(key_body).to_bytes(2, "big") + key_body)
    digest.update(head + b"\x04\xff" + len(head).to_bytes(4, "big"))
    signer = secret._key._key.keymaterial.__privkey__()
    signature = signer.sign(digest.digest())
    mpis = b"".join(b"\x01\x00" + half for half in (signature[:32], signature[32:]))
    new_body = head + unhashed + digest.digest()[:2] + mpis
    assert len(new_body) < 192
    signed = bytes([binding.raw[0], len(new_body)]) + new_body
    return b"".join(p.raw for p in (primary, uid, uid_sig, subkey)) + signed


def test_key_flags_in_a_second_octet_keep_the_binding_valid() -> None:
    """pgpy reads each Key Flags octet as if it were the first and writes one octet back
    (0x0C 0x08 became 0x0C 0x00): the binding then failed and the key was refused. The
    same loss hit Key Server Preferences. Every flag subpacket now keeps its octets."""
    carol = pgp.generate(CAROL, dt.datetime.now(dt.UTC))
    data = _with_key_flags(carol, b"\x0c\x08")
    assert pysequoia.Cert.from_bytes(data).fingerprint.upper() == carol.fingerprint
    vetting = untrusted.vet_keys(data, dt.datetime.now(dt.UTC), BUDGET, address=CAROL)
    assert vetting.rejected == ()
    (vetted,) = vetting.accepted
    assert b"\x03\x1b\x0c\x08" in vetted.data  # what Carol signed is what is stored
    assert messages.can_encrypt_to(vetted.data)
    # And the signature was really made over those octets: with the binding's flags
    # changed back, it no longer holds.
    forged = data.replace(b"\x03\x1b\x0c\x08", b"\x03\x1b\x0c\x00")
    assert untrusted.vet_keys(forged, dt.datetime.now(dt.UTC), BUDGET).accepted == ()
