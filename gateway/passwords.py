"""Argon2id password hashing with a cap on input size and on concurrent hashes.

Every password check goes through `PasswordHasher.verify`, including checks for
accounts that do not exist (against a dummy hash), so response time does not tell
an attacker which accounts exist. The semaphore keeps a flood of logins from
exhausting memory: each hash takes `memory_cost` KiB. Logins call it through
`gateway.logins`, outside any transaction, once per login at most.
"""

from __future__ import annotations

import secrets
import string
import threading

import argon2

from gateway.settings import PasswordSettings

PASSWORD_ALPHABET = string.ascii_letters + string.digits


class PasswordTooLong(ValueError):
    """Refused before hashing: hashing huge inputs is a denial-of-service lever."""


class PasswordHasher:
    def __init__(self, settings: PasswordSettings) -> None:
        self._max_bytes = settings.max_password_bytes
        self._hasher = argon2.PasswordHasher(
            time_cost=settings.time_cost,
            memory_cost=settings.memory_cost,
            parallelism=settings.parallelism,
            type=argon2.Type.ID,
        )
        self._slots = threading.BoundedSemaphore(settings.max_concurrent_hashes)
        self._dummy_hash = self._hasher.hash(secrets.token_hex(16))

    def _check_length(self, password: str) -> bytes:
        encoded = password.encode("utf-8")
        if len(encoded) > self._max_bytes:
            raise PasswordTooLong(f"passwords are limited to {self._max_bytes} bytes")
        return encoded

    def too_long(self, password: str) -> bool:
        return len(password.encode("utf-8")) > self._max_bytes

    def hash(self, password: str) -> str:
        encoded = self._check_length(password)
        if not encoded:
            raise ValueError("empty password")
        with self._slots:
            return self._hasher.hash(encoded)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """True when `password` matches; with no stored hash, burns the same time and fails."""
        try:
            encoded = self._check_length(password)
        except PasswordTooLong:
            return False
        with self._slots:
            try:
                return self._hasher.verify(stored_hash or self._dummy_hash, encoded) and (
                    stored_hash is not None
                )
            except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
                return False

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)


def generate_password(length: int = 20) -> str:
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(length))
