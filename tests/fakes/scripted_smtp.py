"""A scripted SMTP peer for the replies aiosmtpd will not send: odd codes, malformed
lines, 8-bit text, a close after the final dot, a stall or a trickle at any step, and
a STARTTLS that is offered and then fails.

Plain TCP on 127.0.0.1 in its own event-loop thread. `script` maps a step to what
the peer does there; a step not in it gets an ordinary positive reply. Steps:
"GREETING", "EHLO", "STARTTLS", "MAIL", "RCPT", "DATA" (the reply to the command),
"DOT" (the reply after the final dot) and "QUIT". A value is the reply's bytes (sent
as they are: the test writes the CRLFs, or leaves them out), or an action:

    CLOSE               hang up instead of replying
    STALL               never reply (until the client hangs up)
    Trickle(b"250 ok\\r\\n", 0.3)   one byte every 0.3 s

For "STARTTLS", a reply of exactly b"220 ...\\r\\n" with `tls_context` set starts TLS
on the server side; `garble_tls=True` answers the client's handshake with junk
instead. `deaf_after_data=True` reads nothing after its reply to DATA. `received`
holds every command line as it came; `messages` the data of each transaction whose
final dot arrived (also when the reply then was a close).
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from dataclasses import dataclass


class _Action:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


CLOSE = _Action("CLOSE")
STALL = _Action("STALL")


@dataclass(frozen=True)
class Trickle:
    reply: bytes
    interval: float


Step = bytes | _Action | Trickle

DEFAULTS: dict[str, bytes] = {
    "GREETING": b"220 scripted.test ESMTP\r\n",
    "EHLO": b"250-scripted.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
    "STARTTLS": b"220 2.0.0 go ahead\r\n",
    "MAIL": b"250 2.1.0 ok\r\n",
    "RCPT": b"250 2.1.5 ok\r\n",
    "DATA": b"354 go ahead\r\n",
    "DOT": b"250 2.0.0 queued as SCRIPTED\r\n",
    "QUIT": b"221 2.0.0 bye\r\n",
}


class ScriptedSmtp:
    def __init__(
        self,
        script: dict[str, Step] | None = None,
        *,
        tls_context: ssl.SSLContext | None = None,
        garble_tls: bool = False,
        deaf_after_data: bool = False,
    ) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self.script = dict(script or {})
        self.tls_context = tls_context
        self.garble_tls = garble_tls
        self.deaf_after_data = deaf_after_data
        self.received: list[bytes] = []
        self.messages: list[bytes] = []
        self.connections = 0
        self.closed = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)

    def __enter__(self) -> ScriptedSmtp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def verbs(self) -> list[str]:
        return [line[:8].split(b" ")[0].strip().upper().decode("ascii") for line in self.received]

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _reply(self, step: str, writer: asyncio.StreamWriter) -> bool:
        """Carry out the step; False when the connection is to end."""
        action = self.script.get(step, DEFAULTS[step])
        if action is CLOSE:
            return False
        if action is STALL:
            await asyncio.sleep(3600)
            return False
        if isinstance(action, Trickle):
            for byte in action.reply:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(action.interval)
            return True
        assert isinstance(action, bytes)
        writer.write(action)
        await writer.drain()
        return True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            if not await self._reply("GREETING", writer):
                return
            while line := await reader.readline():
                self.received.append(line)
                verb = line[:8].split(b" ")[0].strip().upper().decode("ascii", "replace")
                if verb in ("EHLO", "HELO"):
                    step = "EHLO"
                elif verb in ("MAIL", "RCPT", "DATA", "QUIT", "STARTTLS"):
                    step = verb
                else:
                    writer.write(b"502 5.5.2 not here\r\n")
                    continue
                if not await self._reply(step, writer):
                    return
                if step == "QUIT":
                    return
                starttls = self.script.get("STARTTLS", DEFAULTS["STARTTLS"])
                if step == "STARTTLS" and isinstance(starttls, bytes) and starttls[:3] == b"220":
                    if self.garble_tls:
                        await reader.read(1)
                        writer.write(b"\x15\x03\x03\x00\x02\x02\x28garbage" * 4)
                        await writer.drain()
                        return
                    assert self.tls_context is not None
                    await writer.start_tls(self.tls_context)
                if step == "DATA" and self.deaf_after_data:
                    await asyncio.sleep(3600)  # reads nothing more: the buffers fill up
                    return
                if step == "DATA" and self.script.get("DATA", DEFAULTS["DATA"]) == DEFAULTS["DATA"]:
                    data = bytearray()
                    while (chunk := await reader.readline()) not in (b".\r\n", b""):
                        data += chunk[1:] if chunk.startswith(b"..") else chunk
                    if chunk == b"":
                        return
                    self.messages.append(bytes(data))
                    if not await self._reply("DOT", writer):
                        return
        except (ConnectionError, OSError, ssl.SSLError, asyncio.CancelledError):
            pass
        finally:
            self.closed.set()
            writer.close()
            self._tasks.discard(task)

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
