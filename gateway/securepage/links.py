"""Link tokens: 256 bits from `secrets`; the database keeps only their SHA-256.

A token is a bearer secret of full key strength, so a fast hash is the right
one (a slow hash protects low-entropy passwords, not 256 random bits): a stolen
database gives no working link. Logs name a link by a short prefix of the
digest, never by the token.
"""

from __future__ import annotations

import hashlib
import re
import secrets

TOKEN_BYTES = 32
# token_urlsafe(32) is 43 characters of the URL-safe base64 alphabet.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")
PAGE_PATH = "/s/"


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def is_well_formed(token: str) -> bool:
    return TOKEN_PATTERN.fullmatch(token) is not None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def log_name(token: str) -> str:
    """What a log line may say about a token: 8 hex digits of its digest."""
    return digest(token)[:8]


def page_url(base_url: str, token: str) -> str:
    """The link for a notification, from the configured base URL (never a request's Host)."""
    return base_url.rstrip("/") + PAGE_PATH + token
