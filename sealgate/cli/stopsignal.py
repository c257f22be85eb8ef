"""SIGINT and SIGTERM over `sealgate serve`'s whole life, start-up and shutdown included.

The event loop's handlers exist only once the loop runs, after the database is
opened, the keys backfilled and the worker processes started; a signal before
them killed serve at once (exit 143, workers left to notice their parent's death)
and a Ctrl-C printed a traceback. From serve's first line on, a signal is noted
here instead; start-up looks at the note between its steps, the loop takes it
over, and it is noted again once the loop has gone, so any signal ends in the
same clean stop and exit 0.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio
    from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    def __init__(self) -> None:
        self.received: int | None = None

    def catch(self) -> StopSignals:
        """Note SIGINT and SIGTERM from now on (the process's main thread only)."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._note)
        return self

    def _note(self, signum: int, _frame: FrameType | None) -> None:
        self.received = signum

    @property
    def requested(self) -> bool:
        return self.received is not None

    def hand_to(self, loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
        """From now on a signal sets `stop`; one noted already sets it at once."""
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, self._on_loop, signum, stop)
        if self.requested:
            stop.set()

    def _on_loop(self, signum: int, stop: asyncio.Event) -> None:
        self.received = signum
        stop.set()

    def take_back(self, loop: asyncio.AbstractEventLoop) -> None:
        """Before the loop closes (which would restore the default, deadly action)."""
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)
        self.catch()
