"""A thread pool for the SMTP servers' reads, apart from work that waits to write.

The SMTP servers run their blocking work in threads. Work that writes (AUTH's audit
entry and lockout count, DATA's commit) waits for the database's write lock, which
on SQLite one writer holds at a time (a purge batch, a large submission), and holds
its thread while it waits. In the event loop's default pool (cpu count + 4 threads)
a few such waits took every thread, and then the commands that only read (a new
connection's count, MAIL FROM's login re-check, RCPT's lookups) queued behind them
for as long as the lock was held, though a read never needs the lock: SQLite's WAL
readers and PostgreSQL's snapshots do not wait for writers. So the reads run here,
in a pool no writer uses.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


def default_threads() -> int:
    """As many as asyncio's default pool: reads are short, but on PostgreSQL each is a
    round trip, and a few connections at once should not queue one another."""
    return min(32, (os.cpu_count() or 1) + 4)


class ReadPool:
    """Threads for blocking calls that only read (the database, a rate limiter's store).

    What runs here must never wait for the database's write lock: no
    `gateway.db.transaction`, only `gateway.db.read_only` and lookups."""

    def __init__(self, name: str, threads: int | None = None) -> None:
        self._executor = ThreadPoolExecutor(
            max_workers=threads or default_threads(), thread_name_prefix=name
        )

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn(*args, **kwargs)` in one of the pool's threads, in this task's context (its
        log id), as `asyncio.to_thread` does for the default pool."""
        loop = asyncio.get_running_loop()
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await loop.run_in_executor(self._executor, call)

    def spawn(self, fn: Callable[P, object], *args: P.args, **kwargs: P.kwargs) -> None:
        """Start `fn` in the pool and do not wait for it (from code that cannot await);
        once the pool is closed, in the loop's default pool instead."""
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        try:
            self._executor.submit(call)
        except RuntimeError:  # closed: the server is stopping
            asyncio.get_running_loop().run_in_executor(None, call)

    def close(self) -> None:
        """Let calls already running finish; start no others."""
        self._executor.shutdown(wait=False, cancel_futures=True)
