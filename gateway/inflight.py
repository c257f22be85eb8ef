"""One budget for the bytes of messages in flight, shared by everything in the process.

Each message costs memory many times its size while it is handled (SMTP line
buffers, the MIME parse, pgpy's copies, the armored ciphertext, the database
write), and before this budget only each message was bounded: four 24 MiB
messages at once took `sealgate serve` from 104 MB to 1.2 GB. So every path that
holds a message (SMTP DATA on the submission and inbound listeners, the pipeline
behind it, a webmail upload, the relay's claimed rows) reserves its size here
first, and releases it when the message is committed, refused or sent.

Past the budget nothing is lost: SMTP answers `451 4.3.1` before the client sends
the data (clients retry), the webmail shows a friendly error with the form kept,
and the relay leaves rows queued for its next sweep. A message that is alone in
flight always passes, however large, so a budget below `[smtp] max_message_size`
slows the gateway down but can never wedge it.
"""

from __future__ import annotations

import threading
from types import TracebackType


class InFlightBudget:
    """A byte counter with a limit; thread-safe (the event loop, worker threads and
    portal threads all reserve from the same one)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the in-flight budget must be at least 1 byte")
        self.limit = limit
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        with self._lock:
            return self._used

    def _take(self, size: int) -> bool:
        with self._lock:
            if self._used and self._used + size > self.limit:
                return False
            self._used += size
            return True

    def _give(self, size: int) -> None:
        with self._lock:
            self._used -= size

    def try_reserve(self, size: int) -> Reservation | None:
        """A reservation of `size` bytes, or None when the budget cannot hold it now."""
        size = max(0, size)
        return Reservation(self, size) if self._take(size) else None


class Reservation:
    """Bytes held in an `InFlightBudget` until `release` (idempotent; a context manager)."""

    def __init__(self, budget: InFlightBudget, size: int) -> None:
        self._budget = budget
        self.size = size
        self._released = False

    def resize(self, size: int) -> bool:
        """Hold `size` bytes instead; growing can fail (then nothing changes)."""
        size = max(0, size)
        if self._released:
            raise RuntimeError("the reservation was released")
        if size > self.size:
            if not self._budget._take(size - self.size):
                return False
        else:
            self._budget._give(self.size - size)
        self.size = size
        return True

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._budget._give(self.size)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
