"""Senders' signing keys, kept unlocked for a few seconds after an authenticated message.

Every encrypted message is signed with its sender's hosted key. Unwrapping that key
and letting Sequoia parse it (which checks every self-signature) costs about 0.2 ms,
a quarter of all the work a worker does for a 10 KiB message, and a mail program
sends its messages in bursts from one sender. So the parsed key stays in the
process for `lifetime` seconds after it was unlocked (the lookup cache's lifetime,
`[database] lookup_cache_seconds`), then a timer drops it, used or not.

What that changes for the trust model: nothing a stolen database, backup or disk
shows; a key is still unlocked only for an authenticated sender's message; and the
process that holds it also holds the master key ring, which can unwrap every key,
so its memory was already the place to guard. Entries are found by key row and
fingerprint: a new or rotated key is a new row, and any write to the key table in
this process empties the cache (gateway.lookups); other processes see the change
within the lifetime, as they see the new current key row.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Not at run time: every Runtime (every CLI command) makes one of these caches,
    # few of them load pysequoia.
    from keystore.messages import SigningKey

DEFAULT_MAXSIZE = 256


class UnlockedKeys:
    """A bounded map of parsed signing keys; each entry lives `lifetime` seconds from its unlock."""

    def __init__(self, lifetime: float, maxsize: int = DEFAULT_MAXSIZE) -> None:
        self.lifetime = lifetime
        self.maxsize = maxsize
        self._items: OrderedDict[Hashable, tuple[float, SigningKey]] = OrderedDict()
        self._lock = threading.Lock()
        self._generation = 0
        self._timer: threading.Timer | None = None

    def get(self, key: Hashable, unlock: Callable[[], SigningKey]) -> SigningKey:
        """The key unlocked under `key` less than `lifetime` ago, else `unlock()` (kept
        unless the cache was emptied meanwhile)."""
        if self.lifetime <= 0:
            return unlock()
        now = time.monotonic()
        with self._lock:
            self._drop_expired(now)
            found = self._items.get(key)
            if found is not None:
                return found[1]
            generation = self._generation
        signer = unlock()
        with self._lock:
            if generation == self._generation:
                self._items.pop(key, None)  # the newest unlock goes last, in time order
                self._items[key] = (now, signer)
                while len(self._items) > self.maxsize:
                    self._items.popitem(last=False)
                self._arm(now)
        return signer

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def _drop_expired(self, now: float) -> None:
        # Entries are in unlock order (never moved on use): the oldest are first.
        while self._items:
            unlocked_at, _signer = next(iter(self._items.values()))
            if now - unlocked_at < self.lifetime:
                return
            self._items.popitem(last=False)

    def _arm(self, now: float) -> None:
        """Make sure a timer drops the oldest entry when it expires, even if no message
        comes to look (called with the lock held)."""
        if self._timer is not None or not self._items:
            return
        oldest, _signer = next(iter(self._items.values()))
        delay = max(0.0, oldest + self.lifetime - now) + 0.01
        self._timer = threading.Timer(delay, self._sweep)
        self._timer.daemon = True
        self._timer.start()

    def _sweep(self) -> None:
        now = time.monotonic()
        with self._lock:
            self._timer = None
            self._drop_expired(now)
            self._arm(now)
