"""dkimpy's RSA private-key operation, done by OpenSSL (through `cryptography`).

dkimpy does the whole of DKIM for us (canonicalisation, header selection, the
DKIM-Signature header) and stays the one implementation of it. Only the arithmetic
under its rsa-sha256 signatures moves: dkimpy computes RSASSA-PKCS1-v1_5 with
Python's big integers, about 8 to 12 ms of CPU per signature with a 2048-bit key,
for every relayed message; OpenSSL makes the same signature in well under 1 ms
(docs/benchmarks.md, "DKIM signing"). dkimpy 1.1.8 has no way to hand it a signer,
so `install` rebinds the one name its signing code calls, `dkim.RSASSA_PKCS1_v1_5_sign`
(`DomainSigner.gen_header` looks it up in the `dkim` module, where
`from dkim.crypto import ...` put it; `dkim.crypto`'s own binding is left alone).

RSASSA-PKCS1-v1_5 is deterministic, so the replacement returns exactly the bytes
dkimpy's own function would: the same DKIM-Signature header, byte for byte
(tests/gateway/test_dkim_rsa.py checks this over generated messages). Whatever
OpenSSL does not take (a hash other than SHA-1 or SHA-256, a key it finds
inconsistent, a digest too long for the modulus) goes to dkimpy's function as
before, so its results and errors are its own. Ed25519 (ed25519-sha256) is
PyNaCl's inside dkimpy and is not touched.

The hook is checked against one dkimpy release, `CHECKED_DKIMPY`: with another one
installed it is not put in (signing stays correct, only slow), a warning says so,
and a test fails until someone has read the new release's `gen_header` and
`dkim/crypto.py` and moved the number.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import logging
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import dkim
import dkim.crypto
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

log = logging.getLogger(__name__)

CHECKED_DKIMPY = "1.1.8"
# One RSA key per hosted domain signs (a second while a new selector takes over);
# a cache miss costs OpenSSL's key check, about 40 ms once per key and process.
KEY_CACHE_SIZE = 1024
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha1": hashes.SHA1,
}
_ORIGINAL: Callable[[Any, dict[str, int]], bytes | bytearray] = dkim.crypto.RSASSA_PKCS1_v1_5_sign


class _Digest(Protocol):
    """What dkimpy passes as `hash`: a hashlib object over the data to sign (`HashThrough`)."""

    name: str

    def digest(self) -> bytes: ...


@functools.lru_cache(maxsize=KEY_CACHE_SIZE)
def _private_key(numbers: tuple[int, ...]) -> rsa.RSAPrivateKey | None:
    """The OpenSSL key for dkimpy's parsed numbers, None if OpenSSL finds it inconsistent.

    Cached by the numbers themselves: dkimpy parses the PEM again for every
    signature, and OpenSSL's key check (primality of p and q) costs far more than
    a signature.
    """
    n, e, d, p, q, dp, dq, qinv = numbers
    try:
        return rsa.RSAPrivateNumbers(
            p, q, d, dp, dq, qinv, rsa.RSAPublicNumbers(e, n)
        ).private_key()
    except ValueError:
        return None


def rsassa_pkcs1_v1_5_sign(hashed: _Digest, private_key: dict[str, int]) -> bytes | bytearray:
    """dkimpy's `RSASSA_PKCS1_v1_5_sign(hash, private_key)`, the same bytes, by OpenSSL.

    `private_key` is the dict of `dkim.crypto.parse_private_key`; nothing of it is
    logged or put in an error.
    """
    algorithm = _HASHES.get(hashed.name.lower())
    if algorithm is None:
        return _ORIGINAL(hashed, private_key)
    key = _private_key(
        (
            private_key["modulus"],
            private_key["publicExponent"],
            private_key["privateExponent"],
            private_key["prime1"],
            private_key["prime2"],
            private_key["exponent1"],
            private_key["exponent2"],
            private_key["coefficient"],
        )
    )
    if key is None:
        return _ORIGINAL(hashed, private_key)
    try:
        return key.sign(hashed.digest(), padding.PKCS1v15(), utils.Prehashed(algorithm()))
    except ValueError:  # digest too long for the modulus: dkimpy raises its own error
        return _ORIGINAL(hashed, private_key)


def dkimpy_version() -> str:
    return importlib.metadata.version("dkimpy")


def installed() -> bool:
    return dkim.RSASSA_PKCS1_v1_5_sign is rsassa_pkcs1_v1_5_sign


def install() -> bool:
    """Put the hook in (once; again is a no-op); False if this dkimpy is not the checked one."""
    if installed():
        return True
    version = dkimpy_version()
    if version != CHECKED_DKIMPY:
        log.warning(
            "dkim: dkimpy %s is not the %s whose RSA signing was checked: RSA DKIM "
            "signatures stay in its pure Python (correct, about 5x the CPU per signature)",
            version,
            CHECKED_DKIMPY,
        )
        return False
    if dkim.RSASSA_PKCS1_v1_5_sign is not _ORIGINAL:
        log.warning("dkim: dkimpy's RSA signing was replaced by other code; left as it is")
        return False
    dkim.RSASSA_PKCS1_v1_5_sign = rsassa_pkcs1_v1_5_sign
    return True


@contextlib.contextmanager
def dkimpy_arithmetic() -> Iterator[None]:
    """dkimpy's own RSA arithmetic while inside: for the tests' and bench's side-by-side runs.

    It rebinds a module global, for every thread: not for use in a running relay.
    """
    was = dkim.RSASSA_PKCS1_v1_5_sign
    dkim.RSASSA_PKCS1_v1_5_sign = _ORIGINAL
    try:
        yield
    finally:
        dkim.RSASSA_PKCS1_v1_5_sign = was
