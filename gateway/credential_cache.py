"""Verified-credential cache: a mail program that reconnects for every message pays Argon2 once.

Modelled on Dovecot's auth cache, with what it keeps narrowed to what cannot be
turned into a login:

- the key is HMAC-SHA256, under a random secret made when the process starts,
  of (what kind of password, whose, the password typed). It can only be
  recomputed by this process from the password itself, and is worth nothing
  once the process ends: the cache never holds a password, nor a hash that
  would verify one elsewhere;
- the value is the account, and a fingerprint (HMAC under the same secret) of
  the stored Argon2 hash the password was verified against, with an expiry.

A hit counts only while the stored hash the caller has just read equals the one
verified, so a password changed anywhere (another `serve` process, the CLI) ends
every cached login for it, as a new hash always has a new salt. The caller also
checks, before it asks, that the account is enabled, not locked out and (for an
address password) without two-factor login, reading the rows on every login:
the cache saves only the Argon2 run, never a check. Only a right password is
stored; a wrong one always costs a full verify. In this process, a lockout,
password change or disable also forgets the account's entries at once
(`forget_account`), which every live cache hears.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import struct
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass

_live: weakref.WeakSet[CredentialCache] = weakref.WeakSet()
_live_guard = threading.Lock()


def _encode(*parts: bytes) -> bytes:
    """Length-prefixed, so ("ab", "c") and ("a", "bc") never share a key."""
    return b"".join(struct.pack(">I", len(part)) + part for part in parts)


@dataclass(frozen=True)
class _Entry:
    account_id: int
    fingerprint: bytes
    stored_at: dt.datetime
    expires_at: dt.datetime


class CredentialCache:
    """Bounded (least recently used goes first), thread-safe; `ttl` zero turns it off."""

    def __init__(self, ttl: dt.timedelta, max_entries: int) -> None:
        self.ttl = ttl
        self.max_entries = max(max_entries, 0)
        self._secret = secrets.token_bytes(32)
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._guard = threading.Lock()
        with _live_guard:
            _live.add(self)

    @property
    def enabled(self) -> bool:
        return self.ttl > dt.timedelta(0) and self.max_entries > 0

    def __repr__(self) -> str:
        return f"CredentialCache(ttl={self.ttl}, entries={len(self)})"

    def __len__(self) -> int:
        return len(self._entries)

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("a credential cache stays in its process")

    def _key(self, kind: str, subject_id: int, password: str) -> bytes:
        message = _encode(kind.encode(), str(subject_id).encode(), password.encode("utf-8"))
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    def _fingerprint(self, stored_hash: str) -> bytes:
        return hmac.new(self._secret, b"stored\x00" + stored_hash.encode(), hashlib.sha256).digest()

    def hit(
        self, kind: str, subject_id: int, password: str, stored_hash: str, now: dt.datetime
    ) -> bool:
        """True when this password was verified against this very `stored_hash` lately."""
        if not self.enabled:
            return False
        key = self._key(kind, subject_id, password)
        with self._guard:
            entry = self._entries.get(key)
            if entry is None:
                return False
            if not entry.stored_at <= now < entry.expires_at:
                del self._entries[key]
                return False
            if not hmac.compare_digest(entry.fingerprint, self._fingerprint(stored_hash)):
                del self._entries[key]  # changed since: the entry can never hit again
                return False
            self._entries.move_to_end(key)
            return True

    def remember(
        self,
        kind: str,
        subject_id: int,
        account_id: int,
        password: str,
        stored_hash: str,
        now: dt.datetime,
    ) -> None:
        """Note a password Argon2 has just accepted against `stored_hash`."""
        if not self.enabled:
            return
        key = self._key(kind, subject_id, password)
        entry = _Entry(account_id, self._fingerprint(stored_hash), now, now + self.ttl)
        with self._guard:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def forget(self, account_id: int) -> int:
        """Drop the account's entries; how many there were."""
        with self._guard:
            stale = [k for k, e in self._entries.items() if e.account_id == account_id]
            for key in stale:
                del self._entries[key]
        return len(stale)

    def clear(self) -> None:
        with self._guard:
            self._entries.clear()


def forget_account(account_id: int) -> None:
    """Every cache of this process forgets the account (password change, disable, lockout)."""
    with _live_guard:
        caches = list(_live)
    for cache in caches:
        cache.forget(account_id)
