"""keystore.unlocked: a parsed signing key lives its lifetime from the unlock, and no longer."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from keystore import messages, pgp, unlocked
from keystore.unlocked import UnlockedKeys

NOW = dt.datetime(2026, 5, 4, 8, 30, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def keys() -> list[pgp.SecretKey]:
    return [pgp.generate(f"user{n}@example.test", NOW) for n in range(3)]


def _unlocker(key: pgp.SecretKey, calls: list[str]) -> messages.SigningKey:
    calls.append(key.fingerprint)
    return messages.signing_key(pgp.secret_key_bytes(key), key.public)


def test_a_key_is_unlocked_once_within_its_lifetime_and_again_after(
    keys: list[pgp.SecretKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [100.0]
    monkeypatch.setattr(unlocked.time, "monotonic", lambda: clock[0])
    cache = UnlockedKeys(lifetime=5.0)
    calls: list[str] = []
    first = cache.get(1, lambda: _unlocker(keys[0], calls))
    clock[0] += 4.9
    assert cache.get(1, lambda: _unlocker(keys[0], calls)) is first
    other = cache.get(2, lambda: _unlocker(keys[1], calls))
    assert other.fingerprint == keys[1].fingerprint
    clock[0] += 0.1  # five seconds after the first unlock, however often it was used
    again = cache.get(1, lambda: _unlocker(keys[0], calls))
    assert again is not first and again.fingerprint == keys[0].fingerprint
    assert calls == [keys[0].fingerprint, keys[1].fingerprint, keys[0].fingerprint]


def test_an_unused_key_is_dropped_when_its_lifetime_ends(
    keys: list[pgp.SecretKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The clock the cache reads stands still until the test moves it, so a loaded
    # machine cannot expire the first key before the second is unlocked; the timer
    # itself is real and keeps re-arming until it sees the lifetime over.
    clock = [100.0]
    monkeypatch.setattr(unlocked.time, "monotonic", lambda: clock[0])
    cache = UnlockedKeys(lifetime=0.05)
    cache.get(1, lambda: _unlocker(keys[0], []))
    cache.get(2, lambda: _unlocker(keys[1], []))
    assert len(cache) == 2
    clock[0] += 1.0
    for _ in range(1000):  # up to ten seconds of real time for the timer thread
        if not len(cache):
            break
        time.sleep(0.01)
    assert len(cache) == 0, "nobody looked, yet the timer must drop them"
    assert cache._timer is None  # nothing left to wait for


def test_a_key_unlocked_while_the_cache_was_emptied_is_not_kept(
    keys: list[pgp.SecretKey],
) -> None:
    cache = UnlockedKeys(lifetime=60.0)
    calls: list[str] = []

    def unlock_during_a_change() -> messages.SigningKey:
        cache.clear()  # a key row was written while this unlock ran
        return _unlocker(keys[0], calls)

    cache.get(1, unlock_during_a_change)
    assert len(cache) == 0
    cache.get(1, lambda: _unlocker(keys[0], calls))
    cache.clear()
    assert len(cache) == 0
    assert len(calls) == 2


def test_the_cache_is_bounded_oldest_first(keys: list[pgp.SecretKey]) -> None:
    cache = UnlockedKeys(lifetime=60.0, maxsize=2)
    calls: list[str] = []
    for n in range(3):
        cache.get(n, lambda n=n: _unlocker(keys[n], calls))
    assert len(cache) == 2
    cache.get(0, lambda: _unlocker(keys[0], calls))  # the oldest went first
    assert calls == [k.fingerprint for k in keys] + [keys[0].fingerprint]


def test_no_lifetime_means_every_message_unlocks(keys: list[pgp.SecretKey]) -> None:
    cache = UnlockedKeys(lifetime=0.0)
    calls: list[str] = []
    assert cache.get(1, lambda: _unlocker(keys[0], calls)) is not cache.get(
        1, lambda: _unlocker(keys[0], calls)
    )
    assert len(calls) == 2 and len(cache) == 0
