"""Seal a message under a password: AES-256-GCM with a random key, wrapped by Argon2id.

    message key  = 32 random bytes, one per message and generation (so one GCM
                   nonce per key: a new password makes a new key, never a new nonce)
    body blob    = 0x01 | nonce (12) | AES-256-GCM(message key, message, AD)
    KEK          = Argon2id(password, LABEL || salt, t, m, p) → 32 bytes
    wrapped key  = 0x01 | nonce (12) | AES-256-GCM(KEK, message key, AD)

The sender's Sent copy of such a message is sealed the same way under the same
password (see "the sender's Sent copy" below), so database and master key
together open neither.

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
SENT_WRAP_LABEL = b"sealgate sent copy wrap v1"
SENT_BODY_LABEL = b"sealgate sent copy body v1"
MIN_BLOB = 1 + NONCE_BYTES + TAG_BYTES
PARAMS_BYTES = 12 + SALT_BYTES


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

    @classmethod
    def decode(cls, data: bytes) -> KdfParams:
        if len(data) != PARAMS_BYTES:
            _fail()
        time_cost, memory_cost, parallelism = struct.unpack(">III", data[:12])
        return cls(time_cost, memory_cost, parallelism, data[12:])


@dataclass(frozen=True, eq=False)
class PasswordKey:
    """A key derived from a password (the KEK), with the parameters that derived it.

    One derivation can wrap several message keys (the page's and the Sent copy's):
    each wrap has its own random nonce and its own associated data.
    """

    params: KdfParams
    material: bytes = field(repr=False)

    def __reduce__(self) -> NoReturn:
        raise TypeError("password keys are not picklable")


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
    kek = PasswordKey(params, derive_kek(password, params, max_concurrent=max_concurrent))
    return unwrap_with(kek, wrapped_key, public_id=public_id, generation=generation)


def password_key(
    password: str, settings: SecurePageSettings, params: KdfParams | None = None
) -> PasswordKey:
    """Derive the KEK for `password`: under new parameters from settings, or under `params`.

    CPU- and memory-heavy (one Argon2 run): call it before opening a transaction.
    """
    params = params or KdfParams.new(settings)
    material = derive_kek(password, params, max_concurrent=settings.max_concurrent_derivations)
    return PasswordKey(params, material)


def unwrap_with(
    kek: PasswordKey, wrapped_key: bytes, *, public_id: str, generation: int
) -> MessageKey:
    """The page's message key under an already derived KEK; `SealError` if it does not open."""
    material = _open(kek.material, wrapped_key, _wrap_ad(public_id, generation, kek.params))
    if len(material) != KEY_BYTES:
        _fail()
    return MessageKey(material)


def seal_with(content: bytes, kek: PasswordKey, *, public_id: str, generation: int = 1) -> Sealed:
    """Encrypt `content` under a new message key and wrap that key under `kek`."""
    key = MessageKey.generate()
    return Sealed(
        params=kek.params,
        wrapped_key=wrap_key(
            key, kek.material, kek.params, public_id=public_id, generation=generation
        ),
        ciphertext=encrypt_body(key, content, public_id=public_id, generation=generation),
    )


def seal(
    content: bytes,
    password: str,
    settings: SecurePageSettings,
    *,
    public_id: str,
    generation: int = 1,
) -> Sealed:
    """`seal_with` under a KEK freshly derived from `password` (one Argon2 run)."""
    kek = password_key(password, settings)
    return seal_with(content, kek, public_id=public_id, generation=generation)


# -- the sender's Sent copy of a secure-page message ------------------------------------
#
#     copy blob = 0x01 | params (28) | len (4) | wrapped key | body blob
#
# Same construction as the page, in one self-contained blob stored in the Sent
# folder, bound to its own labels and to the message's queue id and sender: the
# sender reads their copy with the message's password, as the recipients do.
# A new password re-wraps the key; the body is not encrypted again.


def _copy_ad(label: bytes, binding: str, params: KdfParams | None = None) -> bytes:
    fields = [label, bytes([FORMAT_V1]), binding.encode("utf-8")]
    if params is not None:
        fields.append(params.encode())
    return _length_prefixed(*fields)


def seal_copy(content: bytes, kek: PasswordKey, *, binding: str) -> bytes:
    key = MessageKey.generate()
    body = _seal(key.material, content, _copy_ad(SENT_BODY_LABEL, binding))
    return _copy_blob(kek, key, body, binding)


def _copy_blob(kek: PasswordKey, key: MessageKey, body: bytes, binding: str) -> bytes:
    wrapped = _seal(kek.material, key.material, _copy_ad(SENT_WRAP_LABEL, binding, kek.params))
    return (
        bytes([FORMAT_V1]) + kek.params.encode() + struct.pack(">I", len(wrapped)) + wrapped + body
    )


def _split_copy(blob: bytes) -> tuple[KdfParams, bytes, bytes]:
    head = 1 + PARAMS_BYTES + 4
    if len(blob) < head or blob[0] != FORMAT_V1:
        _fail()
    params = KdfParams.decode(blob[1 : 1 + PARAMS_BYTES])
    (length,) = struct.unpack(">I", blob[1 + PARAMS_BYTES : head])
    if length != MIN_BLOB + KEY_BYTES or len(blob) < head + length + MIN_BLOB:
        _fail()
    return params, blob[head : head + length], blob[head + length :]


def copy_params(blob: bytes) -> KdfParams:
    """The Argon2 parameters a copy was wrapped under (to reuse a KEK already derived)."""
    return _split_copy(blob)[0]


def unwrap_copy(kek: PasswordKey, blob: bytes, *, binding: str) -> MessageKey:
    params, wrapped, _body = _split_copy(blob)
    if params != kek.params:
        _fail()
    material = _open(kek.material, wrapped, _copy_ad(SENT_WRAP_LABEL, binding, params))
    if len(material) != KEY_BYTES:
        _fail()
    return MessageKey(material)


def open_copy(key: MessageKey, blob: bytes, *, binding: str) -> bytes:
    _params, _wrapped, body = _split_copy(blob)
    return _open(key.material, body, _copy_ad(SENT_BODY_LABEL, binding))


def rewrap_copy(blob: bytes, key: MessageKey, new_kek: PasswordKey, *, binding: str) -> bytes:
    """The same copy with its key wrapped under a new password's KEK."""
    open_copy(key, blob, binding=binding)  # refuses a key that does not belong to this copy
    _params, _wrapped, body = _split_copy(blob)
    return _copy_blob(new_kek, key, body, binding)
