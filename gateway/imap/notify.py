"""Change notices for IMAP IDLE: which folders changed, within this process and across them.

Every write to a folder raises its `modseq` and, on PostgreSQL, sends
`NOTIFY sealgate_mail` in the writer's transaction (gateway.imap.folders), so a
`serve` process listening on that channel learns of mail another process (or
the portal) delivered as soon as it commits. An idling session waits for a
notice about its folder, or at most `[imap] idle_poll_interval` seconds, then
compares the folder's `modseq`: a lost notice costs latency, never a change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Iterable
from typing import Any

import sqlalchemy as sa

from gateway.imap.folders import NOTIFY_CHANNEL

log = logging.getLogger(__name__)
RECONNECT_SECONDS = 2.0


class Notifier:
    """Wakes the sessions idling on a folder; one per `serve` process."""

    def __init__(self) -> None:
        self._waiters: dict[int, set[asyncio.Event]] = {}

    def wake(self, folder_ids: Iterable[int]) -> None:
        for folder_id in folder_ids:
            for event in self._waiters.get(folder_id, ()):
                event.set()

    async def wait(self, folder_id: int, other: Awaitable[None] | None, timeout: float) -> None:
        """Until the folder changes, `other` completes, or `timeout` passes."""
        event = asyncio.Event()
        self._waiters.setdefault(folder_id, set()).add(event)
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(event.wait())]
        if other is not None:
            waits.append(asyncio.ensure_future(other))
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
            waiters = self._waiters.get(folder_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[folder_id]

    async def listen(self, engine: sa.Engine, stop: asyncio.Event) -> None:
        """Relay PostgreSQL notices until `stop`; returns at once on other databases."""
        if engine.dialect.name != "postgresql":
            return
        import psycopg  # only installed with the postgresql extra

        conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while not stop.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    reader = asyncio.ensure_future(self._relay(conn))
                    stopper = asyncio.ensure_future(stop.wait())
                    try:
                        await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        stopper.cancel()
                        reader.cancel()
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await reader
            except (OSError, psycopg.Error) as exc:
                log.warning("IMAP change notices: %s; polling until reconnected", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RECONNECT_SECONDS)

    async def _relay(self, conn: object) -> None:
        async for notice in conn.notifies():  # type: ignore[attr-defined]
            ids = [int(p) for p in notice.payload.split() if p.isdigit()]
            self.wake(ids)
