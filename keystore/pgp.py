"""Every use of pgpy in the project: key generation, parsing, encryption, signatures.

Keeping pgpy behind this one module means its quirks (warnings, str-or-bytes
results, exceptions of every type on malformed input) stop here, and the rest of
the code deals in `PublicKey`, `SecretKey` and bytes. What this module makes:

- keys: Ed25519 primary (certify, sign) with one user id for the address, and a
  Curve25519 ECDH subkey (encrypt communications and storage); preferences
  AES-256, SHA-512 then SHA-256, no compression;
- messages: SEIPD (tag 18, with MDC) under AES-256, signed with SHA-512, literal
  data in binary mode, uncompressed (compression gains little on mail bodies and
  opens length side channels).

Everything parsed here may come from outside; parsing failures become `PgpError`
with a message that is safe to show and never contains key or message bytes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn, overload

import pgpy
from pgpy.constants import (
    CompressionAlgorithm,
    EllipticCurveOID,
    HashAlgorithm,
    KeyFlags,
    PubKeyAlgorithm,
    RevocationReason,
    SymmetricKeyAlgorithm,
)
from pgpy.packet.packets import IntegrityProtectedSKEData, LiteralData

MESSAGE_CIPHER = SymmetricKeyAlgorithm.AES256
SIGNATURE_HASH = HashAlgorithm.SHA512
# Large enough for any key with a few hundred signatures; a bigger "key" is refused
# before pgpy parses it, since its parser holds everything in memory.
MAX_KEY_BYTES = 256 * 1024

REVOCATION_REASONS = {
    "compromised": RevocationReason.Compromised,
    "superseded": RevocationReason.Superseded,
    "retired": RevocationReason.Retired,
    "unspecified": RevocationReason.NotSpecified,
}
RevocationCode = Literal["compromised", "superseded", "retired", "unspecified"]


class PgpError(ValueError):
    """OpenPGP data was malformed or unusable; the message is safe to show."""


def _fail(what: str) -> NoReturn:
    raise PgpError(what) from None


@contextmanager
def _untrusted(what: str) -> Iterator[None]:
    """Turn whatever pgpy raises on bad input into one `PgpError` (it raises many types)."""
    try:
        yield
    except PgpError:
        raise
    except Exception:  # noqa: BLE001
        _fail(what)


@dataclass(frozen=True, eq=False)
class PublicKey:
    """A parsed public key (certificate). Immutable once made: it sits in a shared cache."""

    fingerprint: str
    key_id: str
    subkey_ids: tuple[str, ...]
    _key: Any = field(repr=False)

    def to_bytes(self) -> bytes:
        return bytes(self._key)

    def armored(self) -> str:
        return str(self._key)

    @property
    def user_ids(self) -> list[str]:
        return [uid.name if not uid.email else uid.email for uid in self._key.userids]

    @property
    def is_revoked(self) -> bool:
        return any(True for _ in self._key.revocation_signatures)


@dataclass(frozen=True, eq=False)
class SecretKey:
    """An unlocked secret key. It prints no material and refuses to be pickled."""

    fingerprint: str
    key_id: str
    subkey_ids: tuple[str, ...]
    _key: Any = field(repr=False)

    def __repr__(self) -> str:
        return f"SecretKey(fingerprint={self.fingerprint!r})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("secret keys are not picklable")

    @property
    def public(self) -> PublicKey:
        return _public(self._key.pubkey)

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset((self.key_id, *self.subkey_ids))


def _ids(key: Any) -> tuple[str, str, tuple[str, ...]]:
    fingerprint = str(key.fingerprint).replace(" ", "").upper()
    return fingerprint, fingerprint[-16:], tuple(sorted(str(k).upper() for k in key.subkeys))


def _public(key: Any) -> PublicKey:
    fingerprint, key_id, subkey_ids = _ids(key)
    return PublicKey(fingerprint, key_id, subkey_ids, key)


def _secret(key: Any) -> SecretKey:
    fingerprint, key_id, subkey_ids = _ids(key)
    return SecretKey(fingerprint, key_id, subkey_ids, key)


def user_id_for(address: str) -> str:
    return f"<{address}>"


def generate(address: str, now: dt.datetime) -> SecretKey:
    """A new key for `address`: Ed25519 certify+sign primary, Curve25519 encryption subkey."""
    created = now.astimezone(dt.UTC)
    primary = pgpy.PGPKey.new(PubKeyAlgorithm.EdDSA, EllipticCurveOID.Ed25519, created=created)
    uid = pgpy.PGPUID.new(user_id_for(address))
    primary.add_uid(
        uid,
        usage={KeyFlags.Certify, KeyFlags.Sign},
        hashes=[HashAlgorithm.SHA512, HashAlgorithm.SHA256],
        ciphers=[SymmetricKeyAlgorithm.AES256],
        compression=[CompressionAlgorithm.Uncompressed],
        created=created,
    )
    subkey = pgpy.PGPKey.new(PubKeyAlgorithm.ECDH, EllipticCurveOID.Curve25519, created=created)
    primary.add_subkey(
        subkey,
        usage={KeyFlags.EncryptCommunications, KeyFlags.EncryptStorage},
        created=created,
    )
    return _secret(primary)


def secret_key_bytes(key: SecretKey) -> bytes:
    """The transferable secret key, unprotected: only ever handed to `keystore.wrap`."""
    return bytes(key._key)


def _parse_key(data: bytes | str) -> Any:
    if len(data) > MAX_KEY_BYTES:
        _fail("OpenPGP key is too large")
    with _untrusted("not a valid OpenPGP key"):
        key, _others = pgpy.PGPKey.from_blob(data)
        # pgpy hands back an empty shell for input with no key packet in it.
        if key._key is None or not key.userids:
            _fail("not a valid OpenPGP key")
        _ids(key)
    return key


def parse_secret_key(data: bytes) -> SecretKey:
    key = _parse_key(data)
    if key.is_public:
        _fail("expected a secret key, got a public key")
    if key.is_protected:
        _fail("the secret key is passphrase-protected")
    return _secret(key)


def parse_public_key(data: bytes | str) -> PublicKey:
    key = _parse_key(data)
    if not key.is_public:
        # Never keep secret material that arrived where a public key was expected.
        with _untrusted("not a valid OpenPGP key"):
            key = key.pubkey
    return _public(key)


def revoke(secret: SecretKey, public: PublicKey, code: RevocationCode, comment: str) -> PublicKey:
    """`public` with a key revocation signature by `secret` added (a fresh object)."""
    if secret.fingerprint != public.fingerprint:
        raise ValueError("the revocation must be made by the key itself")
    sig = secret._key.revoke(secret._key, reason=REVOCATION_REASONS[code], comment=comment)
    fresh = _parse_key(public.to_bytes())
    fresh |= sig
    return _public(fresh)


def revocation_reasons(public: PublicKey) -> list[str]:
    """The comments of the key's revocation signatures (for display)."""
    reasons = []
    for sig in public._key.revocation_signatures:
        reason = sig.revocation_reason
        reasons.append(str(reason.comment) if reason is not None else "")
    return reasons


def armor_public_keys(keys: Iterable[PublicKey]) -> str:
    return "".join(k.armored().rstrip("\n") + "\n" for k in keys)


@overload
def encrypt_and_sign(
    data: bytes,
    recipients: Sequence[PublicKey],
    signer: SecretKey | None,
    *,
    armor: Literal[True] = True,
) -> str: ...
@overload
def encrypt_and_sign(
    data: bytes,
    recipients: Sequence[PublicKey],
    signer: SecretKey | None,
    *,
    armor: Literal[False],
) -> bytes: ...
def encrypt_and_sign(
    data: bytes,
    recipients: Sequence[PublicKey],
    signer: SecretKey | None,
    *,
    armor: bool = True,
) -> str | bytes:
    """One SEIPD message (AES-256, MDC) that every recipient can open, signed when a
    signer is given. One session key serves all recipients, as OpenPGP intends."""
    if not recipients:
        raise ValueError("at least one recipient is needed")
    message = pgpy.PGPMessage.new(
        bytes(data), format="b", compression=CompressionAlgorithm.Uncompressed
    )
    if signer is not None:
        message |= signer._key.sign(message, hash=SIGNATURE_HASH)
    session_key = MESSAGE_CIPHER.gen_key()
    try:
        for recipient in recipients:
            with _untrusted(f"cannot encrypt to key {recipient.fingerprint}"):
                message = recipient._key.encrypt(
                    message, cipher=MESSAGE_CIPHER, sessionkey=session_key
                )
    finally:
        del session_key
    return str(message) if armor else bytes(message)


@dataclass(frozen=True, eq=False)
class Decrypted:
    """A decrypted message: its literal bytes and the key ids that signed it."""

    data: bytes = field(repr=False)
    signer_key_ids: frozenset[str]
    _message: Any = field(repr=False)


def _parse_message(message: bytes | str) -> Any:
    with _untrusted("not a valid OpenPGP message"):
        return pgpy.PGPMessage.from_blob(message)


def recipient_key_ids(message: bytes | str) -> frozenset[str]:
    """The key ids an encrypted message names (its PKESK packets); no key needed."""
    parsed = _parse_message(message)
    if not parsed.is_encrypted:
        _fail("the OpenPGP message is not encrypted")
    return frozenset(str(k).upper() for k in parsed.encrypters)


def decrypt(message: bytes | str, keys: Sequence[SecretKey]) -> Decrypted:
    """Open `message` with whichever of `keys` it was encrypted to.

    Only integrity-protected data (SEIPD with MDC) is accepted: the old
    unprotected packet is open to the EFAIL-style malleability attacks.
    """
    parsed = _parse_message(message)
    if not parsed.is_encrypted:
        _fail("the OpenPGP message is not encrypted")
    if not isinstance(parsed._message, IntegrityProtectedSKEData):
        _fail("the OpenPGP message has no integrity protection (MDC)")
    wanted = {str(k).upper() for k in parsed.encrypters}
    key = next((k for k in keys if k.key_ids & wanted), None)
    if key is None:
        _fail("the OpenPGP message is not encrypted to any of our keys")
    with _untrusted("the OpenPGP message cannot be decrypted"):
        inner = key._key.decrypt(parsed)
    if inner.is_encrypted or not isinstance(inner._message, LiteralData):
        _fail("the decrypted OpenPGP message holds no literal data")
    return Decrypted(
        data=bytes(inner._message._contents),
        signer_key_ids=frozenset(str(s).upper() for s in inner.signers),
        _message=inner,
    )


def verify(decrypted: Decrypted, signer: PublicKey) -> bool:
    """Whether `signer` made a valid signature over the decrypted message."""
    if not decrypted.signer_key_ids & {signer.key_id, *signer.subkey_ids}:
        return False
    try:
        with _untrusted("bad signature"):
            return bool(signer._key.verify(decrypted._message))
    except PgpError:
        return False
