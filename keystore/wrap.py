"""AES-256-GCM wrapping of secret keys under the master-key ring.

Blob format, version 1 (all integers big-endian):

    0x01 | master-key version (u32) | nonce (12 bytes) | ciphertext || GCM tag (16 bytes)

The AES key is not the master key itself but HKDF-SHA256 of it with a purpose
label, so the same master key can serve other purposes without key reuse. The
associated data binds the blob to its row (address and fingerprint) and to the
master-key version named in its header, so a blob copied to another row, or a
header edited to name another version, does not open. Nonces are random 96-bit
values: each master-key version wraps only a few blobs per address key, far below
the 2^32 messages per key at which random nonces start to risk a collision.

Every failure to open (truncated, unknown format, retired or unknown version,
wrong row, tampered bytes) raises the one `DecryptionError`, with no detail: an
attacker who can swap blobs learns nothing from which check failed.
"""

from __future__ import annotations

import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from keystore.masterkey import MasterKeyError, MasterKeyRing

FORMAT_V1 = 1
WRAP_LABEL = b"sealgate keystore wrap v1"
NONCE_BYTES = 12
TAG_BYTES = 16
_HEADER = struct.Struct(">BI")
MIN_BLOB = _HEADER.size + NONCE_BYTES + TAG_BYTES


class DecryptionError(Exception):
    """A wrapped secret key could not be opened (for whatever reason)."""

    def __init__(self) -> None:
        super().__init__("the wrapped secret key cannot be opened")


def _wrapping_key(master_key: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=WRAP_LABEL).derive(master_key)


def _associated_data(header: bytes, address: str, fingerprint: str) -> bytes:
    fields = [WRAP_LABEL, header, address.encode("utf-8"), fingerprint.upper().encode("ascii")]
    return b"".join(struct.pack(">H", len(f)) + f for f in fields)


def blob_version(blob: bytes) -> int:
    """The master-key version a blob names (re-wrapping uses it to find work)."""
    if len(blob) < MIN_BLOB or blob[0] != FORMAT_V1:
        raise DecryptionError()
    return int(_HEADER.unpack_from(blob)[1])


def wrap(ring: MasterKeyRing, secret: bytes, *, address: str, fingerprint: str) -> bytes:
    """Seal `secret` under the ring's primary version, bound to (address, fingerprint)."""
    version = ring.primary
    header = _HEADER.pack(FORMAT_V1, version)
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(_wrapping_key(ring.key(version))).encrypt(
        nonce, secret, _associated_data(header, address, fingerprint)
    )
    return header + nonce + sealed


def unwrap(ring: MasterKeyRing, blob: bytes, *, address: str, fingerprint: str) -> bytes:
    version = blob_version(blob)
    try:
        master_key = ring.key(version)
    except MasterKeyError:
        raise DecryptionError() from None
    header = blob[: _HEADER.size]
    nonce = blob[_HEADER.size : _HEADER.size + NONCE_BYTES]
    try:
        return AESGCM(_wrapping_key(master_key)).decrypt(
            nonce,
            blob[_HEADER.size + NONCE_BYTES :],
            _associated_data(header, address, fingerprint),
        )
    except InvalidTag:
        raise DecryptionError() from None
