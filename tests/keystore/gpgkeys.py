"""Keys of outside correspondents, made by GnuPG in the test, and OpenPGP packet surgery.

Every key a test vets here comes from real gpg (2.2) so the checks run against
what correspondents actually send. Broken and forged keys are made by cutting
and splicing the packets of real keys, never by hand-writing key material.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pysequoia

from tests.gnupg import GnuPG

PUBLIC_KEY, USER_ID, SIGNATURE, PUBLIC_SUBKEY = 6, 13, 2, 14


@dataclass(frozen=True)
class Packet:
    tag: int
    raw: bytes  # header and body


def make_key(
    gpg: GnuPG,
    uid: str,
    *,
    algo: str = "future-default",
    usage: str = "default",
    expire: str = "1y",
    faked_time: str | None = None,
) -> str:
    """Generate a key in `gpg` (ed25519 + cv25519 by default); returns its fingerprint."""
    extra = ("--faked-system-time", faked_time) if faked_time else ()
    gpg.run(*extra, "--quick-gen-key", uid, algo, usage, expire)
    return fingerprint_of(gpg, uid)


def key_with_new_subkey(
    gpg: GnuPG, uid: str, algorithm: pysequoia.EncryptionAlgorithm, *, cv25519: bool = True
) -> tuple[bytes, str | None]:
    """A public key (binary) whose encryption subkey is of `algorithm` (X448, an ML-KEM
    composite: algorithms pgpy does not know), made by Sequoia; with `cv25519`, GnuPG
    adds a Curve25519 encryption subkey (the secret key stays in `gpg`) and Sequoia
    merges the two certificates. Returns the key and the id of that added subkey."""
    tsk = pysequoia.Tsk.generate(
        uid,
        profile=pysequoia.Profile.RFC4880,
        cipher_suite=pysequoia.CipherSuite.Cv25519,
        encryption_algorithm=algorithm,
    )
    cert = tsk.extract_certificate()
    if not cv25519:
        return bytes(cert), None
    fingerprint = cert.fingerprint.upper()
    gpg.run("--import", input=bytes(tsk))
    gpg.run("--quick-add-key", fingerprint, "cv25519", "encr", "never")
    listing = gpg.run("--with-colons", "--list-keys", fingerprint).stdout.decode()
    added = [line.split(":")[4] for line in listing.splitlines() if line.startswith("sub:")]
    merged = cert.merge(pysequoia.Cert.from_bytes(export(gpg, fingerprint)))
    return bytes(merged), added[-1].upper()


def fingerprint_of(gpg: GnuPG, uid: str) -> str:
    lines = gpg.run("--with-colons", "--list-keys", "--", uid).stdout.decode().splitlines()
    return next(line.split(":")[9] for line in lines if line.startswith("fpr:"))


def export(gpg: GnuPG, fingerprint: str, *, armor: bool = False) -> bytes:
    return gpg.run(*(("--armor",) if armor else ()), "--export", fingerprint).stdout


def revocation_certificate(gpg: GnuPG, fingerprint: str) -> bytes:
    """The revocation certificate gpg stored when it made the key (armor line unmasked)."""
    path = Path(gpg.home) / "openpgp-revocs.d" / f"{fingerprint}.rev"
    return path.read_bytes().replace(
        b":-----BEGIN PGP PUBLIC KEY BLOCK", b"-----BEGIN PGP PUBLIC KEY BLOCK"
    )


def revoke_key(gpg: GnuPG, fingerprint: str) -> bytes:
    """Import the key's revocation into `gpg`; returns the revoked key (binary)."""
    gpg.import_key(revocation_certificate(gpg, fingerprint))
    return export(gpg, fingerprint)


def revoke_subkey(gpg: GnuPG, fingerprint: str) -> bytes:
    """Revoke the key's first subkey (gpg --edit-key, driven over --command-fd)."""
    commands = b"key 1\nrevkey\ny\n0\n\ny\nsave\n"
    gpg.run("--command-fd", "0", "--status-fd", "2", "--edit-key", fingerprint, input=commands)
    return export(gpg, fingerprint)


def packets(data: bytes) -> list[Packet]:
    """Split binary OpenPGP data into packets (old and new format, definite lengths)."""
    out = []
    i = 0
    while i < len(data):
        ctb = data[i]
        assert ctb & 0x80, "not an OpenPGP packet"
        if ctb & 0x40:
            tag, first = ctb & 0x3F, data[i + 1]
            if first < 192:
                header, length = 2, first
            elif first < 224:
                header, length = 3, ((first - 192) << 8) + data[i + 2] + 192
            else:
                assert first == 255, "partial lengths are not used in keys"
                header, length = 6, int.from_bytes(data[i + 2 : i + 6], "big")
        else:
            tag, kind = (ctb >> 2) & 0x0F, ctb & 0x03
            header = {0: 2, 1: 3, 2: 5}[kind]
            length = int.from_bytes(data[i + 1 : i + header], "big")
        out.append(Packet(tag, data[i : i + header + length]))
        i += header + length
    return out


def join(parts: list[Packet]) -> bytes:
    return b"".join(p.raw for p in parts)


def user_id_packet(text: str) -> Packet:
    body = text.encode()
    assert len(body) < 192
    return Packet(USER_ID, bytes([0xC0 | USER_ID, len(body)]) + body)


def flip_last_byte(packet: Packet) -> Packet:
    """The packet with one bit of its last byte (signature material) changed."""
    raw = bytearray(packet.raw)
    raw[-1] ^= 0x01
    return Packet(packet.tag, bytes(raw))
