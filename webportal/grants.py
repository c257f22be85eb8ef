"""Grants: "this browser typed the right password", kept in the session cookie.

A grant is a message key sealed (AES-256-GCM) under a key derived from the
portal's secret, bound to what it opens (its kind, the row, a binding such as
the seal generation) and to an expiry. So the next request needs no second
Argon2 run, the server keeps nothing, and the cookie alone is useless without
the portal's secret. A new password changes the binding and ends old grants.

Two kinds use it: a recipient's secure page (`/s/<token>`) and a sender's
sealed Sent copy in the webmail.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app, session

from gateway.securepage.crypto import MessageKey

SESSION_KEY = "sealgate_grants"
LABEL = b"sealgate portal grant v2"
MAX_GRANTS = 5
NONCE_BYTES = 12


def _aead() -> AESGCM:
    secret = current_app.config["SECRET_KEY"]
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=LABEL).derive(
        secret if isinstance(secret, bytes) else str(secret).encode()
    )
    return AESGCM(key)


def _slot(kind: str, row_id: int) -> str:
    return f"{kind}:{row_id}"


def _ad(kind: str, row_id: int, binding: bytes, until: int) -> bytes:
    head = LABEL + struct.pack(">IQQ", len(kind), row_id, until) + kind.encode()
    return head + struct.pack(">I", len(binding)) + binding


def _live(now: dt.datetime) -> dict[str, list[object]]:
    return {
        k: v
        for k, v in dict(session.get(SESSION_KEY) or {}).items()
        if isinstance(v, list) and len(v) == 2 and isinstance(v[0], int) and v[0] > now.timestamp()
    }


def grant(
    kind: str, row_id: int, binding: bytes, key: MessageKey, now: dt.datetime, minutes: int
) -> None:
    """Remember `key` for this browser for `minutes` (the newest few grants are kept)."""
    until = int((now + dt.timedelta(minutes=minutes)).timestamp())
    nonce = os.urandom(NONCE_BYTES)
    sealed = _aead().encrypt(nonce, key.material, _ad(kind, row_id, binding, until))
    grants = _live(now)
    grants[_slot(kind, row_id)] = [until, base64.b64encode(nonce + sealed).decode()]
    newest = sorted(grants.items(), key=lambda item: item[1][0], reverse=True)  # type: ignore[arg-type, return-value]
    session[SESSION_KEY] = dict(newest[:MAX_GRANTS])


def granted(kind: str, row_id: int, binding: bytes, now: dt.datetime) -> MessageKey | None:
    """The key this browser was granted, if the grant is still valid for `binding`."""
    entry = (session.get(SESSION_KEY) or {}).get(_slot(kind, row_id))
    if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], int)):
        return None
    until, blob_text = entry
    if until <= now.timestamp() or not isinstance(blob_text, str):
        return None
    try:
        blob = base64.b64decode(blob_text, validate=True)
        material = _aead().decrypt(
            blob[:NONCE_BYTES], blob[NONCE_BYTES:], _ad(kind, row_id, binding, until)
        )
    except (binascii.Error, InvalidTag, ValueError):
        return None
    return MessageKey(material)


def forget(kind: str, row_id: int) -> None:
    grants = dict(session.get(SESSION_KEY) or {})
    if grants.pop(_slot(kind, row_id), None) is not None:
        session[SESSION_KEY] = grants
