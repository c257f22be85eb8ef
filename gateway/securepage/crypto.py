"""Seal a message under a password: AES-256-GCM with a random key, wrapped by Argon2id.

    message key  = 32 random bytes, one per message and generation (so one GCM
                   nonce per key: a new password makes a new key, never a new nonce)
    body blob    = 0x01 | nonce (12) | AES-256-GCM(message key, message, AD)
    KEK          = Argon2id(password, LABEL || salt, t, m, p) → 32 bytes
    wrapped key  = 0x01 | nonce (12) | AES-256-GCM(KEK, message key, AD)

The associated data binds both blobs to the message's public id and generation,
and the wrap also to the Argon2 parameters and salt: a blob moved to another row,
or a row whose cost was edited down, does not open. The Argon2 parameters are
stored beside the salt and bounded when read, so a tampered row cannot make the
portal spend unbounded memory or time (as age does with scrypt's work factor).

What a wrong-password oracle still leaks: whoever holds the row can test
passwords offline at the Argon2 cost per guess; nothing else helps them. That is
why generated passwords are long and random, and why the portal counts tries.

Every failure to open (wrong password, damaged or moved blob, parameters out of
bounds) raises the one `SealError`, with no detail.
"""

from __future__ import annotations

import os
import struct
import threading
from dataclasses import dataclass, field
from typing import NoReturn

import argon2.low_level
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.settings import (
    SECUREPAGE_MAX_MEMORY_COST,
    SECUREPAGE_MAX_PARALLELISM,
    SECUREPAGE_MAX_TIME_COST,
    SecurePageSettings,
)

FORMAT_V1 = 1
KEY_BYTES = 32
SALT_BYTES = 16
NONCE_BYTES = 12
TAG_BYTES = 16
KDF_LABEL = b"sealgate securepage kek v1"
WRAP_LABEL = b"sealgate securepage wrap v1"
BODY_LABEL = b"sealgate securepage body v1"
MIN_BLOB = 1 + NONCE_BYTES + TAG_BYTES


class SealError(Exception):
    """A sealed message could not be opened (for whatever reason)."""

    def __init__(self) -> None:
        super().__init__("the sealed message cannot be opened")


def _fail() -> NoReturn:
    raise SealError() from None


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost and salt of one sealed message (not secret)."""

    time_cost: int
    memory_cost: int
    parallelism: int
    salt: bytes

    @classmethod
    def new(cls, settings: SecurePageSettings) -> KdfParams:
        return cls(
            time_cost=settings.kdf_time_cost,
            memory_cost=settings.kdf_memory_cost,
            parallelism=settings.kdf_parallelism,
            salt=os.urandom(SALT_BYTES),
        )

    def within_bounds(self) -> bool:
        return (
            1 <= self.time_cost <= SECUREPAGE_MAX_TIME_COST
            and 1 <= self.parallelism <= SECUREPAGE_MAX_PARALLELISM
            and 8 * self.parallelism <= self.memory_cost <= SECUREPAGE_MAX_MEMORY_COST
            and len(self.salt) == SALT_BYTES
        )

    def encode(self) -> bytes:
        return struct.pack(">III", self.time_cost, self.memory_cost, self.parallelism) + self.salt


@dataclass(frozen=True, eq=False)
class MessageKey:
    """A message key in memory: it prints no material and refuses to be pickled."""

    material: bytes = field(repr=False)

    def __reduce__(self) -> NoReturn:
        raise TypeError("message keys are not picklable")

    @classmethod
    def generate(cls) -> MessageKey:
        return cls(os.urandom(KEY_BYTES))


@dataclass(frozen=True)
class Sealed:
    """What is stored for one message: parameters, wrapped key and body blob."""

    params: KdfParams
    wrapped_key: bytes = field(repr=False)
    ciphertext: bytes = field(repr=False)


_slots_guard = threading.Lock()
_slots: dict[int, threading.BoundedSemaphore] = {}


def _derivation_slots(limit: int) -> threading.BoundedSemaphore:
    """Per process, at most `limit` Argon2 derivations run at once (each takes `m` KiB)."""
    with _slots_guard:
        return _slots.setdefault(limit, threading.BoundedSemaphore(limit))


def _length_prefixed(*fields: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(f)) + f for f in fields)


def _body_ad(public_id: str, generation: int) -> bytes:
    return _length_prefixed(
        BODY_LABEL, bytes([FORMAT_V1]), public_id.encode("ascii"), struct.pack(">I", generation)
    )


def _wrap_ad(public_id: str, generation: int, params: KdfParams) -> bytes:
    return _length_prefixed(
        WRAP_LABEL,
        bytes([FORMAT_V1]),
        public_id.encode("ascii"),
        struct.pack(">I", generation),
        params.encode(),
    )


def derive_kek(password: str, params: KdfParams, *, max_concurrent: int) -> bytes:
    """Argon2id of the password under the message's salt; refuses parameters out of bounds."""
    if not params.within_bounds():
        _fail()
    with _derivation_slots(max_concurrent):
        return argon2.low_level.hash_secret_raw(
            password.encode("utf-8"),
            KDF_LABEL + params.salt,
            time_cost=params.time_cost,
            memory_cost=params.memory_cost,
            parallelism=params.parallelism,
            hash_len=KEY_BYTES,
            type=argon2.low_level.Type.ID,
        )


def _seal(key: bytes, plaintext: bytes, ad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return bytes([FORMAT_V1]) + nonce + AESGCM(key).encrypt(nonce, plaintext, ad)


def _open(key: bytes, blob: bytes, ad: bytes) -> bytes:
    if len(blob) < MIN_BLOB or blob[0] != FORMAT_V1:
        _fail()
    try:
        return AESGCM(key).decrypt(blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :], ad)
    except InvalidTag:
        _fail()


def encrypt_body(key: MessageKey, content: bytes, *, public_id: str, generation: int) -> bytes:
    return _seal(key.material, content, _body_ad(public_id, generation))


def open_body(key: MessageKey, ciphertext: bytes, *, public_id: str, generation: int) -> bytes:
    return _open(key.material, ciphertext, _body_ad(public_id, generation))


def wrap_key(
    key: MessageKey, kek: bytes, params: KdfParams, *, public_id: str, generation: int
) -> bytes:
    return _seal(kek, key.material, _wrap_ad(public_id, generation, params))


def unwrap_key(
    password: str,
    params: KdfParams,
    wrapped_key: bytes,
    *,
    public_id: str,
    generation: int,
    max_concurrent: int,
) -> MessageKey:
    """The message key, if `password` is right; else `SealError`. Costs one Argon2 run."""
    kek = derive_kek(password, params, max_concurrent=max_concurrent)
    material = _open(kek, wrapped_key, _wrap_ad(public_id, generation, params))
    if len(material) != KEY_BYTES:
        _fail()
    return MessageKey(material)


def seal(
    content: bytes,
    password: str,
    settings: SecurePageSettings,
    *,
    public_id: str,
    generation: int = 1,
) -> Sealed:
    """Encrypt `content` under a new message key and wrap that key under the password.

    CPU- and memory-heavy (one Argon2 run): call it before opening a transaction.
    """
    params = KdfParams.new(settings)
    key = MessageKey.generate()
    kek = derive_kek(password, params, max_concurrent=settings.max_concurrent_derivations)
    return Sealed(
        params=params,
        wrapped_key=wrap_key(key, kek, params, public_id=public_id, generation=generation),
        ciphertext=encrypt_body(key, content, public_id=public_id, generation=generation),
    )
