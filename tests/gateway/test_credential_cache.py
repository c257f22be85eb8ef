"""The verified-credential cache on its own: what it keys by, what it keeps, when it forgets.

Threat: a cache of logins that an attacker who reads the process memory, a core
dump or a pickle could turn into passwords or into hashes to crack or replay.
"""

from __future__ import annotations

import datetime as dt
import pickle

import pytest

from gateway import credential_cache
from gateway.credential_cache import CredentialCache

NOW = dt.datetime(2026, 12, 3, 8, 0, tzinfo=dt.UTC)
HASH = "$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
NEW_HASH = "$argon2id$v=19$m=256,t=1,p=1$bmV3c2FsdA$bmV3aGFzaG5ld2hhc2g"


def make(seconds: float = 120, entries: int = 100) -> CredentialCache:
    return CredentialCache(dt.timedelta(seconds=seconds), entries)


def test_a_hit_needs_the_same_password_subject_kind_and_stored_hash() -> None:
    cache = make()
    cache.remember("address", 5, 1, "right", HASH, NOW)
    assert cache.hit("address", 5, "right", HASH, NOW + dt.timedelta(seconds=10))
    assert not cache.hit("address", 5, "wrong", HASH, NOW)
    assert not cache.hit("address", 6, "right", HASH, NOW)
    assert not cache.hit("account", 5, "right", HASH, NOW)
    # The stored hash changed (a new password, anywhere): the entry is gone for good.
    assert not cache.hit("address", 5, "right", NEW_HASH, NOW)
    assert not cache.hit("address", 5, "right", HASH, NOW)


def test_entries_expire_and_a_clock_moved_back_does_not_revive_them() -> None:
    cache = make(seconds=60)
    cache.remember("address", 5, 1, "right", HASH, NOW)
    assert not cache.hit("address", 5, "right", HASH, NOW - dt.timedelta(seconds=1))
    cache.remember("address", 5, 1, "right", HASH, NOW)
    assert not cache.hit("address", 5, "right", HASH, NOW + dt.timedelta(seconds=60))
    assert len(cache) == 0


def test_bounded_least_recently_used_go_first() -> None:
    cache = make(entries=2)
    cache.remember("address", 1, 1, "a", HASH, NOW)
    cache.remember("address", 2, 2, "b", HASH, NOW)
    assert cache.hit("address", 1, "a", HASH, NOW)  # 1 is now the most recently used
    cache.remember("address", 3, 3, "c", HASH, NOW)
    assert len(cache) == 2
    assert cache.hit("address", 1, "a", HASH, NOW)
    assert not cache.hit("address", 2, "b", HASH, NOW)
    assert cache.hit("address", 3, "c", HASH, NOW)


def test_forget_account_reaches_every_cache_of_the_process() -> None:
    first, second = make(), make()
    for cache in (first, second):
        cache.remember("address", 5, 1, "right", HASH, NOW)
        cache.remember("account", 1, 1, "portal", HASH, NOW)
        cache.remember("address", 9, 2, "other", HASH, NOW)
    credential_cache.forget_account(1)
    for cache in (first, second):
        assert not cache.hit("address", 5, "right", HASH, NOW)
        assert not cache.hit("account", 1, "portal", HASH, NOW)
        assert cache.hit("address", 9, "other", HASH, NOW)


def test_zero_seconds_turns_it_off() -> None:
    cache = make(seconds=0)
    cache.remember("address", 5, 1, "right", HASH, NOW)
    assert not cache.enabled and len(cache) == 0
    assert not cache.hit("address", 5, "right", HASH, NOW)


def test_it_holds_no_password_nor_stored_hash_and_refuses_pickling() -> None:
    cache = make()
    password = "correct horse battery staple"
    cache.remember("address", 5, 1, password, HASH, NOW)
    kept = repr(cache._entries).encode() + b"".join(cache._entries)
    for entry in cache._entries.values():
        kept += entry.fingerprint
    assert password.encode() not in kept and HASH.encode() not in kept
    assert b"aGFzaGhhc2hoYXNoaGFzaA" not in kept  # not even the hash part
    assert password not in repr(cache)
    with pytest.raises(TypeError, match="stays in its process"):
        pickle.dumps(cache)


def test_two_processes_key_the_same_password_differently() -> None:
    """A per-process secret: an entry means nothing outside the process that made it."""
    first, second = make(), make()
    first.remember("address", 5, 1, "right", HASH, NOW)
    second.remember("address", 5, 1, "right", HASH, NOW)
    assert set(first._entries).isdisjoint(second._entries)
