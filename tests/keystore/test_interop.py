"""Our keys and messages against two independent OpenPGP implementations.

GnuPG (the `gpg` binary) and Sequoia (pysequoia) each import our public key,
encrypt and sign to it, and we decrypt and verify; we encrypt and sign to their
keys, and they decrypt and verify. `gpg --list-packets` confirms the algorithms:
EdDSA (22) on Ed25519 for the primary key, ECDH (18) on Curve25519 for the
subkey, and SEIPD with MDC under AES-256 for messages.
"""

from __future__ import annotations

import datetime as dt
import re

import pysequoia as sq
import pytest
import sqlalchemy.orm as so

from keystore import packets, pgp, store, untrusted, wrap
from keystore.masterkey import MasterKeyRing
from keystore.models import StoredKey
from tests.gnupg import GnuPG
from tests.keystore.conftest import audit_sink
from tests.openpgp import encrypt

ALICE = "alice@example.test"
CAROL = "carol@elsewhere.test"
NOW = dt.datetime(2026, 5, 4, 8, 30, tzinfo=dt.UTC)
# Every byte value, CR/LF included: literal data must come back byte for byte.
PLAINTEXT = bytes(range(256)) * 8 + "Grüße, Straße\r\n".encode()
Sessions = so.sessionmaker[so.Session]


@pytest.fixture
def alice(sessions: Sessions, ring: MasterKeyRing) -> StoredKey:
    with sessions.begin() as session:
        return store.get_or_create(session, ring, ALICE, NOW, events=audit_sink)


@pytest.fixture
def gpg_carol(gnupg: GnuPG) -> str:
    """A key made by gpg itself (its defaults: ed25519 + cv25519); returns its fingerprint."""
    gnupg.run("--quick-gen-key", f"Carol <{CAROL}>", "future-default", "default", "never")
    [fingerprint] = gnupg.fingerprints(secret=True)
    return fingerprint


def _gpg_public(gnupg: GnuPG, fingerprint: str) -> pgp.PublicKey:
    return pgp.parse_public_key(gnupg.run("--export", fingerprint).stdout)


def _status(stderr: bytes) -> list[str]:
    lines = stderr.decode(errors="replace").splitlines()
    return [line[9:] for line in lines if line.startswith("[GNUPG:] ")]


def test_gpg_lists_eddsa_ed25519_and_ecdh_cv25519(gnupg: GnuPG, alice: StoredKey) -> None:
    packets = gnupg.list_packets(alice.public_key)
    primary = packets.split(":public key packet:")[1].split("# off=")[0]
    subkey = packets.split(":public sub key packet:")[1].split("# off=")[0]
    assert re.search(r"version 4, algo 22,", primary), primary
    assert "ed25519 (1.3.6.1.4.1.11591.15.1)" in primary
    assert re.search(r"version 4, algo 18,", subkey), subkey
    assert "cv25519 (1.3.6.1.4.1.3029.1.5.1)" in subkey
    assert f':user ID packet: "<{ALICE}>"' in packets
    assert "(key flags: 03)" in packets  # certify + sign on the primary
    assert "(key flags: 0C)" in packets  # encrypt communications + storage on the subkey
    assert "(pref-sym-algos: 9)" in packets  # AES-256
    assert "(pref-hash-algos: 10 8)" in packets  # SHA-512, SHA-256
    assert packets.count(":public sub key packet:") == 1
    assert ":secret" not in packets

    gnupg.import_key(alice.public_key)
    colons = gnupg.run("--with-colons", "--list-keys", ALICE).stdout.decode()
    pub = next(line for line in colons.splitlines() if line.startswith("pub:")).split(":")
    sub = next(line for line in colons.splitlines() if line.startswith("sub:")).split(":")
    assert (pub[1], pub[3], pub[11], pub[16]) == ("-", "22", "scESC", "ed25519")
    assert (sub[3], sub[11], sub[16]) == ("18", "e", "cv25519")
    assert alice.fingerprint in colons


def test_gpg_encrypts_and_signs_to_us_we_decrypt_and_verify(
    gnupg: GnuPG, gpg_carol: str, alice: StoredKey, sessions: Sessions, ring: MasterKeyRing
) -> None:
    gnupg.import_key(alice.public_key)
    message = gnupg.run(
        "--armor",
        "--encrypt",
        "--sign",
        "--recipient",
        ALICE,
        "--local-user",
        gpg_carol,
        input=PLAINTEXT,
    ).stdout
    assert message.startswith(b"-----BEGIN PGP MESSAGE-----")
    packets = gnupg.list_packets(message)
    assert f"keyid {alice.subkey_id}" in packets and "algo 18" in packets
    with sessions() as session:
        carol = _gpg_public(gnupg, gpg_carol)
        result = store.decrypt_for(session, ring, ALICE, message, senders=[carol])
        assert (result.data, result.signature) == (PLAINTEXT, "valid")
        assert result.signer == carol.fingerprint
        other = pgp.generate("mallory@elsewhere.test", NOW).public
        assert store.decrypt_for(session, ring, ALICE, message, senders=[other]).signature == (
            "unknown-key"
        )


def test_we_encrypt_and_sign_gpg_decrypts_and_verifies(
    gnupg: GnuPG, gpg_carol: str, alice: StoredKey, sessions: Sessions, ring: MasterKeyRing
) -> None:
    carol = _gpg_public(gnupg, gpg_carol)
    with sessions.begin() as session:
        signer = store.signing_key(session, ring, ALICE, NOW, events=audit_sink)
    for armor in (True, False):
        data = encrypt(PLAINTEXT, [carol], signer, armor=armor)
        gnupg.import_key(alice.public_key)
        out = gnupg.run("--status-fd", "2", "--decrypt", input=data)
        assert out.stdout == PLAINTEXT
        status = _status(out.stderr)
        assert "DECRYPTION_OKAY" in status
        # MDC (method 2), AES-256 (algo 9), no AEAD
        assert any(s.split()[:3] == ["DECRYPTION_INFO", "2", "9"] for s in status), status
        assert any(s.startswith(f"GOODSIG {alice.key_id}") for s in status), status
        assert any(s.startswith(f"VALIDSIG {alice.fingerprint}") for s in status), status
        assert not any(s.startswith(("BADSIG", "ERRSIG", "DECRYPTION_FAILED")) for s in status)

        packets = gnupg.list_packets(data)
        assert ":encrypted data packet:" in packets and "mdc_method: 2" in packets
        assert ":aead encrypted packet:" not in packets
        assert "tag=18" in packets  # SEIPD (its cipher is in DECRYPTION_INFO above)
        assert "digest algo 10" in packets  # SHA-512 signature
        assert "mode b" in packets  # binary literal data, nothing rewritten
        assert f"keyid {carol.subkey_ids[0]}" in packets


def _sequoia_key(name: str) -> sq.Tsk:
    return sq.Tsk.generate(name, profile=sq.Profile.RFC4880, cipher_suite=sq.CipherSuite.Cv25519)


def test_sequoia_encrypts_and_signs_to_us_we_decrypt_and_verify(
    alice: StoredKey, sessions: Sessions, ring: MasterKeyRing
) -> None:
    dave = _sequoia_key("Dave <dave@elsewhere.test>")
    our_cert = sq.Cert.from_bytes(alice.public_key)
    assert our_cert.fingerprint.upper() == alice.fingerprint
    for armor in (True, False):
        message = sq.encrypt(PLAINTEXT, recipients=[our_cert], signer=dave.signer(), armor=armor)
        with sessions() as session:
            result = store.decrypt_for(session, ring, ALICE, bytes(message))
        assert (result.data, result.signature) == (PLAINTEXT, "unknown-key")
        # Verified against Dave's certificate as Sequoia made it: pgpy's re-serialisation
        # (a PublicKey's bytes) drops the SEIPDv2 bit of its Features subpacket, and the
        # self-signatures over it then fail. Senders whose signatures the webmail checks
        # are hosted keys, which pgpy made and serialises the same way every time.
        secret = wrap.unwrap(
            ring, alice.wrapped_secret, address=ALICE, fingerprint=alice.fingerprint
        )
        opened = untrusted.decrypt_message(
            packets.dearmor(bytes(message)),
            [secret],
            [bytes(dave.extract_certificate())],
            untrusted.STORED_MESSAGE_BUDGET,
            max_output=len(PLAINTEXT),
        )
        assert opened.data == PLAINTEXT
        assert opened.valid_signer == dave.extract_certificate().fingerprint.upper()


def test_we_encrypt_and_sign_sequoia_decrypts_and_verifies(
    alice: StoredKey, sessions: Sessions, ring: MasterKeyRing
) -> None:
    dave = _sequoia_key("Dave <dave@elsewhere.test>")
    dave_public = pgp.parse_public_key(bytes(dave.extract_certificate()))
    with sessions.begin() as session:
        signer = store.signing_key(session, ring, ALICE, NOW, events=audit_sink)
    our_cert = sq.Cert.from_bytes(alice.public_key)
    asked: list[list[str]] = []

    def certs(key_ids: list[str]) -> list[sq.Cert]:
        asked.append(key_ids)
        return [our_cert]

    for armor in (True, False):
        data = encrypt(PLAINTEXT, [dave_public], signer, armor=armor)
        result = sq.decrypt(data, decryptor=dave.decryptor(), store=certs)
        assert bytes(result.bytes) == PLAINTEXT
        [valid] = result.valid_sigs
        assert valid.certificate.upper() == alice.fingerprint
    assert asked


def test_one_message_to_gpg_and_sequoia_recipients_at_once(
    gnupg: GnuPG, gpg_carol: str, alice: StoredKey, sessions: Sessions, ring: MasterKeyRing
) -> None:
    """One session key wrapped for each recipient: both implementations open it."""
    dave = _sequoia_key("Dave <dave@elsewhere.test>")
    recipients = [
        _gpg_public(gnupg, gpg_carol),
        pgp.parse_public_key(bytes(dave.extract_certificate())),
        pgp.parse_public_key(alice.public_key),
    ]
    message = encrypt(PLAINTEXT, recipients)
    assert len(packets.recipient_key_ids(message)) == 3
    assert gnupg.run("--decrypt", input=message).stdout == PLAINTEXT
    assert bytes(sq.decrypt(message, decryptor=dave.decryptor()).bytes) == PLAINTEXT
    with sessions() as session:
        assert store.decrypt_for(session, ring, ALICE, message).data == PLAINTEXT


def test_gpg_imports_the_export_with_the_revocation(
    gnupg: GnuPG, alice: StoredKey, sessions: Sessions, ring: MasterKeyRing
) -> None:
    with sessions.begin() as session:
        new = store.revoke(session, ring, ALICE, "laptop stolen", NOW, events=audit_sink)
        exported = store.export_public(session, ALICE)
    gnupg.run("--import", input=exported.encode())
    colons = gnupg.run("--with-colons", "--list-keys").stdout.decode().splitlines()
    validity = {
        colons[i + 1].split(":")[9]: line.split(":")[1]
        for i, line in enumerate(colons)
        if line.startswith("pub:")
    }
    assert validity == {alice.fingerprint: "r", new.fingerprint: "-"}
    # Sequoia reads the same: the current key first, then the revoked one.
    certs = sq.Cert.split_bytes(exported.encode())
    assert [c.fingerprint.upper() for c in certs] == [new.fingerprint, alice.fingerprint]
    assert [c.is_revoked for c in certs] == [False, True]
