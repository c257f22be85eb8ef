"""Seal small records at rest under the master-key ring, for any part that needs it.

The keystore's own wrapping (keystore.wrap) is bound to an address key; this is
the same construction for other records, such as a queued notification that
carries a secure-page link: a stolen database without the master key must not
reveal the link.

Blob format, version 1 (integers big-endian):

    0x01 | master-key version (u32) | nonce (12 bytes) | ciphertext || GCM tag (16 bytes)

The AES key is HKDF-SHA256 of the master key with a label naming the purpose, so
no two purposes share a key. The associated data binds the blob to its purpose,
its row (`binding`) and the version in its header. Every failure to open raises
the one `SealedRecordError`.
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
LABEL = b"sealgate record seal v1 "
NONCE_BYTES = 12
TAG_BYTES = 16
_HEADER = struct.Struct(">BI")
MIN_BLOB = _HEADER.size + NONCE_BYTES + TAG_BYTES


class SealedRecordError(Exception):
    """A sealed record could not be opened (for whatever reason)."""

    def __init__(self) -> None:
        super().__init__("the sealed record cannot be opened")


def _key(master_key: bytes, purpose: str) -> bytes:
    info = LABEL + purpose.encode("ascii")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master_key)


def _ad(header: bytes, purpose: str, binding: bytes) -> bytes:
    fields = [LABEL, header, purpose.encode("ascii"), binding]
    return b"".join(struct.pack(">I", len(f)) + f for f in fields)


def blob_version(blob: bytes) -> int:
    """The master-key version a blob names (a master-key rotation uses it to find work)."""
    if len(blob) < MIN_BLOB or blob[0] != FORMAT_V1:
        raise SealedRecordError()
    return int(_HEADER.unpack_from(blob)[1])


def seal(ring: MasterKeyRing, data: bytes, *, purpose: str, binding: bytes) -> bytes:
    """`data` sealed under the ring's primary version, bound to `purpose` and `binding`."""
    header = _HEADER.pack(FORMAT_V1, ring.primary)
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(_key(ring.key(ring.primary), purpose)).encrypt(
        nonce, data, _ad(header, purpose, binding)
    )
    return header + nonce + sealed


def open_sealed(ring: MasterKeyRing, blob: bytes, *, purpose: str, binding: bytes) -> bytes:
    version = blob_version(blob)
    try:
        master_key = ring.key(version)
    except MasterKeyError:
        raise SealedRecordError() from None
    header, rest = blob[: _HEADER.size], blob[_HEADER.size :]
    try:
        return AESGCM(_key(master_key, purpose)).decrypt(
            rest[:NONCE_BYTES], rest[NONCE_BYTES:], _ad(header, purpose, binding)
        )
    except InvalidTag:
        raise SealedRecordError() from None


def reseal(ring: MasterKeyRing, blob: bytes, *, purpose: str, binding: bytes) -> bytes:
    """The same record under the ring's primary version (for a master-key rotation)."""
    if blob_version(blob) == ring.primary:
        return blob
    data = open_sealed(ring, blob, purpose=purpose, binding=binding)
    return seal(ring, data, purpose=purpose, binding=binding)
