"""The portal's root secret: signs session cookies and CSRF tokens.

It lives in `<data dir>/session.key` (32 random bytes, mode 0600, made on first
start) or, for containers, in `SEALGATE_SESSION_KEY` (base64 or hex of at least
32 bytes). There is no default: a guessable key would let anyone forge a session.
Each use gets its own sub-key derived with a purpose label, so a leak of one
derived key (a CSRF token oracle, say) says nothing about the others.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SESSION_KEY_FILE = "session.key"
SESSION_KEY_ENV = "SEALGATE_SESSION_KEY"
KEY_BYTES = 32


class SessionKeyError(RuntimeError):
    """The key is malformed, too short, or its file is readable by others."""


def load_or_create(data_dir: Path, env: Mapping[str, str] | None = None) -> bytes:
    """The root key from the environment, else from the key file (made if missing)."""
    env = os.environ if env is None else env
    if env.get(SESSION_KEY_ENV):
        return _decode_env(env[SESSION_KEY_ENV])
    path = data_dir / SESSION_KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_file(path)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secrets.token_bytes(KEY_BYTES))
        fh.flush()
        os.fsync(fh.fileno())
    return _read_file(path)


def derive(root: bytes, purpose: str) -> bytes:
    """A 32-byte sub-key for one purpose (e.g. "session-cookie", "csrf")."""
    return HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_BYTES,
        salt=None,
        info=b"sealgate portal " + purpose.encode("ascii"),
    ).derive(root)


def _read_file(path: Path) -> bytes:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SessionKeyError(f"{path} is readable by others (mode {mode:o}); run chmod 600 on it")
    key = path.read_bytes()
    if len(key) != KEY_BYTES:
        raise SessionKeyError(
            f"{path} must hold exactly {KEY_BYTES} bytes; delete it to make a new one"
            " (everyone will have to log in again)"
        )
    return key


def _decode_env(value: str) -> bytes:
    value = value.strip()
    key: bytes | None = None
    is_hex = len(value) % 2 == 0 and all(c in "0123456789abcdefABCDEF" for c in value)
    if is_hex and len(value) >= 2 * KEY_BYTES:
        key = bytes.fromhex(value)
    else:
        try:
            key = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            key = None
    if key is None or len(key) < KEY_BYTES:
        # The value itself is never echoed: it is a secret even when malformed.
        raise SessionKeyError(
            f"{SESSION_KEY_ENV} must be base64 or hex of at least {KEY_BYTES} random bytes"
            " (e.g. the output of `python -c 'import secrets; print(secrets.token_hex(32))'`)"
        )
    if len(set(key)) < 8:
        raise SessionKeyError(f"{SESSION_KEY_ENV} does not look random; use random bytes")
    return key
