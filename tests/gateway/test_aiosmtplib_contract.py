"""What sealgate takes from aiosmtplib beyond its public API, checked against the real one.

gateway/transport/data.py sends DATA through aiosmtplib's protocol object: it arms
`read_response()` before it writes the data, so a reply that comes while the
transfer is still being watched is kept, not dropped as unsolicited. If a new
aiosmtplib dropped it, the relay would wait out the 10-minute timeout after the
final dot and then send the accepted mail again: a silent duplicate. gateway/relay.py
tells a reply over 32 KiB from other broken replies by aiosmtplib's text, which
offers no exception type or attribute of its own for it (both are code -1). These
tests fail loudly when any of that changes shape; pyproject.toml bounds aiosmtplib
below 6 for the same reason.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import socket

import aiosmtplib
import pytest
from aiosmtplib.protocol import MAX_LINE_LENGTH, MAX_RESPONSE_LENGTH, SMTPProtocol

from gateway import relay
from gateway.transport.data import DataTimeouts, send_data


def test_the_installed_aiosmtplib_is_inside_the_pinned_range() -> None:
    [pin] = [r for r in importlib.metadata.requires("sealgate") or [] if r.startswith("aiosmtplib")]
    assert "<6" in pin
    major = int(importlib.metadata.version("aiosmtplib").split(".")[0])
    assert major == 5


def test_the_protocol_methods_data_py_calls_have_the_shape_it_expects() -> None:
    read = inspect.signature(SMTPProtocol.read_response)
    assert list(read.parameters) == ["self", "timeout"]
    assert inspect.iscoroutinefunction(SMTPProtocol.read_response)
    write = inspect.signature(SMTPProtocol.write)
    assert list(write.parameters) == ["self", "data"]
    assert not inspect.iscoroutinefunction(SMTPProtocol.write)


async def _early_replier(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Greets, says 250 to everything, 354 to DATA, and 250 at the first byte of data:
    before the client has even finished writing it."""
    writer.write(b"220 early.test ESMTP\r\n")
    in_data = False
    while line := await reader.readline():
        if in_data:
            writer.write(b"250 2.0.0 taken early\r\n")
            in_data = False
            while (await reader.readline()) not in (b".\r\n", b""):
                pass
        elif line.upper().startswith(b"DATA"):
            writer.write(b"354 go on\r\n")
            in_data = True
        elif line.upper().startswith(b"QUIT"):
            writer.write(b"221 bye\r\n")
            break
        else:
            writer.write(b"250 ok\r\n")
        await writer.drain()
    writer.close()


def test_a_reply_that_comes_while_the_data_is_written_is_kept() -> None:
    async def scenario() -> int:
        server = await asyncio.start_server(_early_replier, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30)
        try:
            await client.connect()
            await client.mail("a@example.test")
            await client.rcpt("b@example.test")
            assert isinstance(client.protocol, SMTPProtocol)
            # A dropped reply would end in SMTPReadTimeoutError after `done`.
            timeouts = DataTimeouts(init=30, block=30, done=30)
            response = await send_data(client, (b"x" * 998 + b"\r\n") * 200, timeouts)
            await client.quit()
            return response.code
        finally:
            client.close()
            server.close()
            await server.wait_closed()

    assert asyncio.run(scenario()) == 250


def _reply_error(*chunks: bytes) -> aiosmtplib.SMTPResponseException:
    """What the real SMTPProtocol makes of these bytes as a reply (over a socket pair)."""

    async def scenario() -> aiosmtplib.SMTPResponseException:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        transport, protocol = await loop.create_connection(
            lambda: SMTPProtocol(loop=loop), sock=ours
        )
        try:
            reading = asyncio.ensure_future(protocol.read_response(timeout=10))
            await asyncio.sleep(0)
            theirs.setblocking(False)
            for chunk in chunks:
                await loop.sock_sendall(theirs, chunk)
            with pytest.raises(aiosmtplib.SMTPResponseException) as caught:
                await reading
            return caught.value
        finally:
            transport.close()
            theirs.close()

    return asyncio.run(scenario())


@pytest.mark.parametrize(
    "chunks",
    [
        [b"250-" + b"y" * 60 + b"\r\n"] * (MAX_RESPONSE_LENGTH // 60 + 1),
        [b"250 " + b"x" * MAX_LINE_LENGTH + b"\r\n"],
    ],
    ids=["reply over 32 KiB", "line over 8 KiB"],
)
def test_an_over_long_reply_is_told_apart_by_the_text_relay_reads(chunks: list[bytes]) -> None:
    error = _reply_error(*chunks)
    assert error.code == -1
    text = relay._reply_text(error.code, error.message, "relay.test:25")
    assert "longer than 32 KiB" in text


def test_a_malformed_reply_is_not_taken_for_an_over_long_one() -> None:
    error = _reply_error(b"hello there\r\n")
    assert error.code == -1
    text = relay._reply_text(error.code, error.message, "relay.test:25")
    assert text.startswith("protocol error: relay relay.test:25 sent no valid SMTP reply")
