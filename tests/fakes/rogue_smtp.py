"""A scripted SMTP peer that misbehaves where aiosmtpd cannot: replies without end.

Plain TCP on 127.0.0.1 in its own event-loop thread (relay security = none).
It greets, answers EHLO, then answers the command named in `endless_at`
("EHLO", "MAIL", "RCPT" or "DATA") with one reply that never finishes: either
one line that never ends (`style="line"`) or continuation lines without a last
one (`style="lines"`). `sent` counts the bytes it pushed, `closed` is set
when the client hung up.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Literal

CHUNK = 16 * 1024


class RogueSmtp:
    def __init__(
        self, *, endless_at: str = "MAIL", style: Literal["line", "lines"] = "line"
    ) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self.endless_at = endless_at.upper()
        self.style = style
        self.sent = 0
        self.closed = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            writer.write(b"220 rogue.test ESMTP\r\n")
            while line := await reader.readline():
                verb = line[:4].upper().decode("ascii", "replace")
                if verb == self.endless_at:
                    await self._endless(writer)
                    return
                if verb == "EHLO":
                    writer.write(b"250-rogue.test\r\n250 8BITMIME\r\n")
                elif verb == "QUIT":
                    writer.write(b"221 bye\r\n")
                    return
                else:
                    writer.write(b"250 ok\r\n")
                await writer.drain()
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            self.closed.set()
            writer.close()
            self._tasks.discard(task)

    async def _endless(self, writer: asyncio.StreamWriter) -> None:
        chunk = b"x" * CHUNK if self.style == "line" else b"250-" + b"y" * 60 + b"\r\n"
        if self.style == "line":
            writer.write(b"250 ")
        while not writer.is_closing():
            writer.write(chunk)
            self.sent += len(chunk)
            await writer.drain()
            await asyncio.sleep(0)

    def close(self) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.sleep(0)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
