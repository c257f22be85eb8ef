"""A correspondent's key with a subkey of an algorithm pgpy does not know (X448, the
ML-KEM + X25519 composite of the post-quantum drafts) beside a usable Curve25519 one.

pgpy refuses the whole key when one subkey has an algorithm it cannot parse, so the
correspondent's mail went to the secure page instead of being encrypted to a key
they publish. Such a subkey (with its signatures) is now ignored, the Curve25519
subkey is vetted as any other, and what is stored is the usual minimal key: gpg
encrypts to it and the correspondent opens what the gateway (Sequoia) encrypts to it.

The keys are made the way correspondents make them: Sequoia (pysequoia) generates
the key with the new subkey, GnuPG adds a Curve25519 subkey, and the two
certificates are merged by Sequoia.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pysequoia
import pytest

from keystore import messages, packets, pgp, untrusted
from tests.gnupg import GnuPG
from tests.keystore.gpgkeys import PUBLIC_SUBKEY, key_with_new_subkey
from tests.keystore.gpgkeys import packets as split

BUDGET = untrusted.Budget(max_bytes=512 * 1024, timeout=10.0, memory_mb=256)
CAROL = "carol@partner.example"
NEW_ALGORITHMS = {
    "x448": pysequoia.EncryptionAlgorithm.X448,
    "mlkem768-x25519": pysequoia.EncryptionAlgorithm.MLKEM768_X25519,
}


def _home(tmp_path: Path, name: str) -> GnuPG:
    home = tmp_path / name
    home.mkdir(mode=0o700)
    return GnuPG(home)


def _vet(data: bytes) -> pgp.KeyVetting:
    return untrusted.vet_keys(data, dt.datetime.now(dt.UTC), BUDGET)


@pytest.mark.parametrize("name", sorted(NEW_ALGORITHMS))
@pytest.mark.parametrize("armored", [False, True])
def test_the_curve25519_subkey_is_used_and_the_unknown_one_ignored(
    tmp_path: Path, name: str, armored: bool
) -> None:
    partner = _home(tmp_path, "partner")
    data, cv25519 = key_with_new_subkey(partner, f"Carol <{CAROL}>", NEW_ALGORITHMS[name])
    algorithms = [
        str(p.key_algorithm)
        for p in pysequoia.packet.PacketPile.from_bytes(data)
        if p.tag == pysequoia.packet.Tag.PublicSubkey
    ]
    # The key really carries the subkey pgpy cannot read, beside Ed25519 and Curve25519.
    known = {"PublicKeyAlgorithm.EdDSA", "PublicKeyAlgorithm.ECDH"}
    assert sorted(a in known for a in algorithms) == [False, True, True]
    assert "PublicKeyAlgorithm.ECDH" in algorithms
    if armored:
        data = packets.armor(data, "PUBLIC KEY BLOCK")

    vetting = _vet(data)

    assert vetting.rejected == ()
    (vetted,) = vetting.accepted
    assert (vetted.address, vetted.subkey_id) == (CAROL, cv25519)
    assert [p.tag for p in split(vetted.data)].count(PUBLIC_SUBKEY) == 1
    # gpg takes the stored key and encrypts to it; what Sequoia encrypts to it, Carol reads.
    check = _home(tmp_path, "check")
    assert "IMPORT_OK" in check.import_key(vetted.data)
    check.run("--encrypt", "--recipient", vetted.fingerprint, input=b"probe")
    sealed = messages.encrypt(b"for carol", [pgp.parse_public_key(vetted.data)], None)
    # Carol's key advertises SEIPDv2, which gpg 2.2 cannot read: her Sequoia opens it,
    # with the secret keys gpg holds (the Curve25519 one among them).
    carol = pysequoia.Tsk.from_bytes(partner.run("--export-secret-keys", vetted.fingerprint).stdout)
    assert pysequoia.decrypt(sealed, carol.decryptor()).bytes == b"for carol"


def test_a_key_whose_only_encryption_subkey_is_unknown_is_refused_plainly(
    tmp_path: Path,
) -> None:
    data, _ = key_with_new_subkey(
        _home(tmp_path, "partner"),
        f"Carol <{CAROL}>",
        pysequoia.EncryptionAlgorithm.X448,
        cv25519=False,
    )
    vetting = _vet(data)
    assert vetting.accepted == ()
    (rejected,) = vetting.rejected
    assert rejected.addresses == (CAROL,)
    assert rejected.code == "no-encryption-subkey"
    assert "algorithm this gateway supports" in rejected.reason
