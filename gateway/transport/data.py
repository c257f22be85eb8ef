"""The DATA command with RFC 5321 4.5.3.2's three timeouts of its own.

aiosmtplib's `data()` waits the same time for the 354, for the transfer and for
the reply after the final dot. RFC 5321 gives these 2, 3 (per block) and 10
minutes, and the last one matters most: a receiver that scans the content
before it answers, answered late, had accepted the mail; a client that gave up
earlier sent it again, and the recipient got it twice.

That needs aiosmtplib's protocol object (`read_response`, `write`), not its public
API: pyproject.toml keeps aiosmtplib below 6, and
tests/gateway/test_aiosmtplib_contract.py fails when their shape changes.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

import aiosmtplib
from aiosmtplib.response import SMTPResponse

_LEADING_DOT = re.compile(rb"(?m)^\.")


@dataclass(frozen=True)
class DataTimeouts:
    """Seconds: for the 354 (init), without transfer progress (block), for the
    reply after the final dot (done)."""

    init: float
    block: float
    done: float


async def send_data(client: aiosmtplib.SMTP, wire: bytes, timeouts: DataTimeouts) -> SMTPResponse:
    """Send DATA, the message (`wire`: CRLF line ends, ending in CRLF) and the final dot.

    Returns the 2xx reply; raises SMTPDataError for any other reply and
    SMTPTimeoutError (a TimeoutError) when a stage runs out of time. On an error
    the connection is aborted: its state is no longer known.
    """
    start = await client.execute_command(b"DATA", timeout=timeouts.init)
    if start.code != 354:
        raise aiosmtplib.SMTPDataError(start.code, start.message)
    protocol, transport = client.protocol, client.transport
    if protocol is None or not isinstance(transport, asyncio.WriteTransport):
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    # Listen before the first byte leaves: a reply that arrives while the
    # transfer is still being watched must not be dropped as unsolicited.
    reply = asyncio.ensure_future(protocol.read_response(timeout=None))
    await asyncio.sleep(0)
    try:
        protocol.write(_LEADING_DOT.sub(b"..", wire) + b".\r\n")
        await _transferred(transport, reply, timeouts.block)
        try:
            async with asyncio.timeout(timeouts.done):
                response = await asyncio.shield(reply)
        except TimeoutError:
            raise aiosmtplib.SMTPReadTimeoutError(
                f"no reply within {timeouts.done:g} s after the end of the data"
            ) from None
    except BaseException:
        if reply.done() and not reply.cancelled():
            reply.exception()  # seen: the error raised here says enough
        reply.cancel()
        # Aborted, not closed: a close waits to send what is still buffered, so a peer
        # that reads nothing held the socket and up to the whole message for as long
        # as it liked (client.close() also drops the handles anyone could abort later).
        transport.abort()
        client.close()
        raise
    # Any 2xx is a delivery (RFC 5321 4.2.1): a 251 or 252 taken for a failure was
    # sent again on every retry, then bounced although it had arrived.
    if not 200 <= response.code < 300:
        raise aiosmtplib.SMTPDataError(response.code, response.message)
    return response


async def _transferred(
    transport: asyncio.WriteTransport, reply: asyncio.Future[SMTPResponse], block: float
) -> None:
    """Wait until our send buffer is empty, or the peer answered early.

    Fails when the buffer has not shrunk for `block` seconds: the peer stopped
    reading (RFC 5321's "data block" timeout).
    """
    loop = asyncio.get_running_loop()
    left = transport.get_write_buffer_size()
    deadline = loop.time() + block
    while left and not reply.done():
        await asyncio.wait({reply}, timeout=min(0.25, block))
        now_left = transport.get_write_buffer_size()
        if now_left < left:
            left, deadline = now_left, loop.time() + block
        elif loop.time() >= deadline:
            raise aiosmtplib.SMTPTimeoutError(f"the relay took none of the data for {block:g} s")
