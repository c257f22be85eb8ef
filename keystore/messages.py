"""Message crypto: sign, encrypt, decrypt and verify, all through Sequoia-PGP (pysequoia).

Each OpenPGP library of the project has one job: pgpy (`keystore.pgp`) makes and
manages the hosted keys; Sequoia does everything to messages. Sequoia is
memory-safe, checks the self-signatures of every key it uses (pgpy does not), and
does the gateway's per-message step (parse the sender's key, sign, encrypt to
several keys) about ten times faster than pgpy.

What this module makes: SEIPD messages (AES-256 by the keys' preferences, with
MDC) signed by the sender's key, binary; the caller armors them straight into
the mail it builds (`keystore.packets.write_armor`), so the ciphertext is not
copied once more per step.

Secret keys are parsed from their unwrapped bytes: a `SigningKey` prints no
material and refuses to be pickled. This module keeps none; `keystore.unlocked`
keeps a sender's for a few seconds. Parsed public certificates are cached per
`PublicKey` object (those sit in the keystore's caches already).

Decryption of stored mail runs only in the sandbox child of `keystore.untrusted`
(`open_message`): Sequoia inflates compressed data without a bound of its own, so
the child's address-space limit is the bound.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn

# Sequoia's errors capture a stack backtrace whenever RUST_BACKTRACE is set (developers
# set it): symbolising one costs about 0.3 s, and every message with no valid signature
# raises one. RUST_LIB_BACKTRACE governs library errors only (not panics); it is read
# once, at the first error, so it is set before pysequoia is loaded.
os.environ["RUST_LIB_BACKTRACE"] = "0"

import pysequoia

from keystore.pgp import PgpError, PublicKey

SignatureStatus = Literal["valid", "invalid", "unsigned", "unknown-key"]


def _failure(exc: BaseException) -> bool:
    """Whether `exc` is Sequoia refusing its input. pysequoia raises RuntimeError or
    ValueError, and a Rust panic (Sequoia 2.4 panics on some truncated messages)
    arrives as pyo3's PanicException, a BaseException; running out of memory, an
    interrupt or an exit is none of these."""
    if isinstance(exc, MemoryError | KeyboardInterrupt | SystemExit):
        return False
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


@dataclass(frozen=True, eq=False)
class SigningKey:
    """A hosted secret key unlocked for one message. Prints no material, refuses pickling."""

    fingerprint: str
    public: PublicKey
    _tsk: Any = field(repr=False)

    def __repr__(self) -> str:
        return f"SigningKey(fingerprint={self.fingerprint!r})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("secret keys are not picklable")


def signing_key(secret: bytes, public: PublicKey) -> SigningKey:
    """Parse an unwrapped transferable secret key (about half a millisecond).

    Raises `PgpError` when the bytes are no secret key, or not the key of `public`.
    """
    try:
        tsk = pysequoia.Tsk.from_bytes(secret)
        fingerprint = tsk.extract_certificate().fingerprint.upper()
    except BaseException as exc:
        if not _failure(exc):
            raise
        raise PgpError("not a valid OpenPGP secret key") from None
    if fingerprint != public.fingerprint:
        raise PgpError("the secret key does not match its public key")
    return SigningKey(fingerprint, public, tsk)


_certs: weakref.WeakKeyDictionary[PublicKey, Any] = weakref.WeakKeyDictionary()
_certs_lock = threading.Lock()


def _cert(key: PublicKey) -> Any:
    """Sequoia's parse of `key`, once per `PublicKey` object (about 1.5 ms each time)."""
    with _certs_lock:
        cert = _certs.get(key)
    if cert is None:
        try:
            cert = pysequoia.Cert.from_bytes(key.to_bytes())
        except BaseException as exc:
            if not _failure(exc):
                raise
            raise PgpError(f"cannot encrypt to key {key.fingerprint}") from None
        with _certs_lock:
            _certs[key] = cert
    return cert


def encrypt(data: bytes, recipients: Sequence[PublicKey], signer: SigningKey | None) -> bytes:
    """One binary SEIPD message that every recipient can open, signed when a signer is
    given. One session key serves all recipients, as OpenPGP intends."""
    if not recipients:
        raise ValueError("at least one recipient is needed")
    certs = [_cert(r) for r in recipients]
    try:
        sign_with = signer._tsk.signer() if signer is not None else None
        return pysequoia.encrypt(data, certs, sign_with, armor=False)
    except BaseException as exc:
        if not _failure(exc):
            raise
        names = ", ".join(r.fingerprint for r in recipients)
        raise PgpError(f"cannot encrypt to key {names}") from None


def can_encrypt_to(key: bytes) -> bool:
    """Whether Sequoia, under its standard policy, encrypts a probe to `key` (bytes of
    a certificate): the last check an outside key passes before it is used."""
    try:
        pysequoia.encrypt(b"probe", [pysequoia.Cert.from_bytes(key)], None, armor=False)
    except BaseException as exc:
        if not _failure(exc):
            raise
        return False
    return True


def encrypts_to(key: PublicKey) -> bool:
    """Whether Sequoia encrypts to `key` now (a probe, about 0.2 ms on a cached parse).

    An outside key was vetted when it arrived, but Sequoia judges it again, on the wall
    clock, at every message: a key it no longer takes would fail the whole message.
    Callers ask before they choose a recipient's key, and pass over a key it refuses."""
    try:
        pysequoia.encrypt(b"probe", [_cert(key)], None, armor=False)
    except PgpError:
        return False
    except BaseException as exc:
        if not _failure(exc):
            raise
        return False
    return True


# --- decryption (the sandbox child only) ----------------------------------------------


@dataclass(frozen=True, eq=False)
class Opened:
    """A decrypted message: its literal bytes, the fingerprint of the key whose signature
    verified (None if none did), and the key ids or fingerprints its signatures name."""

    data: bytes = field(repr=False)
    valid_signer: str | None
    issuers: frozenset[str]


@dataclass(frozen=True, eq=False)
class Decrypted:
    """A decrypted stored message and what its signature says about the expected sender."""

    data: bytes = field(repr=False)
    signature: SignatureStatus
    signer: str | None = None  # the fingerprint whose signature verified


def open_message(message: bytes, secret_keys: Sequence[bytes], senders: Sequence[bytes]) -> Opened:
    """Decrypt `message` with whichever of `secret_keys` opens it, verifying its
    signatures against `senders` (certificates).

    No bound of its own on the output: only for the sandbox child, whose
    address-space limit stops a compression bomb. Sequoia refuses data without
    integrity protection (the old SED packet). Raises `PgpError`.
    """
    certs = [cert for cert in map(_parsed_cert, senders) if cert is not None]
    for secret in secret_keys:
        opened = _open_with(message, secret, certs)
        if opened is not None:
            return opened
    raise PgpError("the OpenPGP message cannot be decrypted")


def open_unencrypted(data: bytes, secret: bytes, senders: Sequence[bytes]) -> Opened | None:
    """The literal data of `data`, an unencrypted message (the packets a message decrypted
    by `keystore.bzip2_messages` held), its signatures verified against `senders` as
    `open_message` does; None when Sequoia does not read it. Sandbox child only."""
    certs = [cert for cert in map(_parsed_cert, senders) if cert is not None]
    return _open_with(data, secret, certs)


def _parsed_cert(data: bytes) -> Any:
    try:
        return pysequoia.Cert.from_bytes(data)
    except BaseException as exc:  # a sender's broken key verifies nothing
        if not _failure(exc):
            raise
        return None


def _open_with(message: bytes, secret: bytes, certs: list[Any]) -> Opened | None:
    """The message opened with one secret key, or None if that key does not open it.

    Given a store of certificates, Sequoia returns the data only when a signature
    verifies; a message with none that does is opened a second time without one.
    """
    issuers: list[str] = []

    def store(ids: list[str]) -> list[Any]:
        issuers.extend(str(i).upper() for i in ids)
        return certs

    try:
        decryptor = pysequoia.Tsk.from_bytes(secret).decryptor()
        try:
            result = pysequoia.decrypt(message, decryptor, store)
            signer = next((_fingerprint_of(s) for s in result.valid_sigs), None)
        except BaseException as exc:  # no valid signature, or not decryptable at all
            if not _failure(exc):
                raise
            result = pysequoia.decrypt(message, decryptor)
            signer = None
    except BaseException as exc:
        if not _failure(exc):
            raise
        return None
    data = result.bytes
    return None if data is None else Opened(data, signer, frozenset(issuers))


def _fingerprint_of(signature: Any) -> str:
    return str(signature.certificate).upper()


def signature_status(opened: Opened, senders: Sequence[PublicKey]) -> Decrypted:
    """What the signatures of an opened message say about the expected `senders` keys."""
    if opened.valid_signer is not None:
        return Decrypted(opened.data, "valid", opened.valid_signer)
    if not opened.issuers:
        return Decrypted(opened.data, "unsigned")
    ids = {i for key in senders for i in (key.key_id, *key.subkey_ids)}
    named = {issuer[-16:] for issuer in opened.issuers}
    return Decrypted(opened.data, "invalid" if named & ids else "unknown-key")
