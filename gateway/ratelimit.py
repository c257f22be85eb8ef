"""Per-client counters for the SMTP edge: concurrent connections and recent AUTH failures.

These live in the process that holds the connections, which is where they act;
account lockout (shared by every process) is kept in the database instead.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable


class ConnectionCounter:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = defaultdict(int)

    def acquire(self, client: str) -> bool:
        if self._open[client] >= self.limit:
            return False
        self._open[client] += 1
        return True

    def release(self, client: str) -> None:
        self._open[client] -= 1
        if self._open[client] <= 0:
            del self._open[client]


class FailureWindow:
    """At most `limit` failures per client within `window` seconds."""

    def __init__(
        self, limit: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str) -> deque[float]:
        now = self._clock()
        entries = self._failures.setdefault(client, deque())
        while entries and now - entries[0] > self.window:
            entries.popleft()
        return entries

    def blocked(self, client: str) -> bool:
        recent = self._recent(client)
        if not recent:
            self._failures.pop(client, None)
        return len(recent) >= self.limit

    def record(self, client: str) -> None:
        self._recent(client).append(self._clock())
