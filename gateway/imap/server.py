"""The IMAP listeners of `sealgate serve`: STARTTLS and implicit TLS, no login before TLS.

pymap's own server lets a client on localhost log in without TLS; ours never
does: on the STARTTLS port the greeting offers no mechanism and says
LOGINDISABLED until the handshake, on the TLS port the handshake comes first.
pymap's protocol trace (DEBUG) carries passwords and message bodies, so it is
filtered out whatever the log level.

Everything a client sends is bounded before it is read: a command line (with its
literals) may hold `PRE_LOGIN_COMMAND` bytes before login and `[imap]
max_append_size` after, and a non-synchronizing literal that would pass the limit,
or is bigger than any message may be, ends the connection with BYE [TOOBIG] before
any of it is read (RFC 7888 §4): the client sends it unasked, and reading it to drop
it would let one client make the server read for as long as it sends. A
synchronizing literal over the limit is refused (NO [TOOBIG] or BAD) before the
go-ahead, so it never comes, and the session goes on. The limit holds for all a command
brings, over every synchronizing literal too: pymap holds a whole command in memory,
so a MULTIAPPEND of many messages, each within the append limit, would otherwise fill
it (Dovecot takes any number, as it streams each message to disk). Bytes a client pipelines
behind STARTTLS end the connection too: they came in clear, and would otherwise run
as if they had come through TLS. An AUTHENTICATE answer that is no strict base64, or
no UTF-8, is a BAD before any login is tried.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import logging
import ssl
import sys
from asyncio import StreamReader, StreamWriter
from base64 import b64decode, b64encode
from collections.abc import Awaitable, Iterable
from contextlib import AsyncExitStack, closing
from typing import Any, TypeVar, cast

from proxyprotocol.noop import ProxyProtocolNoop
from proxyprotocol.reader import ProxyProtocolReader
from proxyprotocol.sock import SocketInfo
from pymap.context import connection_exit
from pymap.exceptions import ResponseError
from pymap.imap import IMAPConnection
from pymap.imap.state import ConnectionState
from pymap.parsing import Params, Space
from pymap.parsing.command import Command
from pymap.parsing.command.auth import AppendCommand, ListCommand
from pymap.parsing.command.select import FetchCommand
from pymap.parsing.commands import Commands, InvalidCommand
from pymap.parsing.exceptions import NotParseable
from pymap.parsing.message import AppendMessage
from pymap.parsing.primitives import Atom
from pymap.parsing.response import (
    CommandResponse,
    Response,
    ResponseBye,
    ResponseCode,
    ResponseContinuation,
    ResponseNo,
    ResponseOk,
)
from pymap.parsing.specials import Tag
from pymap.parsing.state import ExpectContinuation, ParsingInterrupt, ParsingState
from pymap.selected import SelectedMailbox
from pysasl.creds.server import ServerCredentials
from pysasl.exception import AuthenticationError
from pysasl.mechanism import ChallengeResponse, ServerChallenge

from gateway import outages
from gateway.imap import listing, modutf7
from gateway.imap.backend import Message, SealgateBackend, Session
from gateway.imap.listlines import ListLines
from gateway.imap.modutf7 import EightBitName
from gateway.imap.notify import Notifier
from gateway.ratelimit import ConnectionCounter
from gateway.runtime import Runtime
from gateway.timeutil import Clock, utcnow
from gateway.tls import server_context

log = logging.getLogger(__name__)
T = TypeVar("T")
_PYMAP_LOG = logging.getLogger("pymap")

# The most a command line, literals included, may hold before login: LOGIN or an
# AUTHENTICATE answer with a long password, never a message.
PRE_LOGIN_COMMAND = 64 * 1024
# Room for the command around an APPEND's message literal.
COMMAND_ROOM = 64 * 1024
# A literal's size is an RFC 9051 number64, at most 19 digits past its leading zeros:
# a longer count is more than any limit, and one of over 4300 digits int() refuses.
_MAX_COUNT_DIGITS = 19
_TOO_MANY_BAD = ResponseBye(b"Too many invalid commands.")
EIGHT_BIT_NAME = (
    b"A mailbox name is 7-bit: 8-bit characters are sent in modified UTF-7"
    b" (RFC 3501 5.1.3); this server does not offer UTF8=ACCEPT."
)


class _NoProtocolTrace(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


class _BufferedWriter:
    """Collects pymap's many small writes (about seven per FETCH answer) and sends them
    at each drain or every 64 KiB: one TLS record per chunk instead of one per piece."""

    LIMIT = 64 * 1024

    def __init__(self, writer: StreamWriter) -> None:
        self._writer = writer
        self._buffer = bytearray()

    def write(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= self.LIMIT:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            self._writer.write(bytes(self._buffer))
            self._buffer.clear()

    async def drain(self) -> None:
        self._flush()
        await self._writer.drain()

    async def start_tls(self, context: ssl.SSLContext) -> None:
        self._flush()
        await self._writer.start_tls(context)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._flush()
        self._writer.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)


class _TimedReader:
    """The client's stream with an autologout: a client silent for `timeout` seconds
    (RFC 9051 asks for at least 30 minutes; IDLE clients renew every 29) is told BYE
    and disconnected, so idle connections cannot pile up."""

    def __init__(self, reader: StreamReader, writer: StreamWriter, timeout: float) -> None:
        self._reader = reader
        self._writer = writer
        self._timeout = timeout

    async def _timed(self, coro: Any) -> bytes:
        try:
            return cast(bytes, await asyncio.wait_for(coro, self._timeout))
        except TimeoutError:
            with contextlib.suppress(Exception):
                self._writer.write(b"* BYE Autologout; idle for too long\r\n")
                await self._writer.drain()
            raise EOFError from None

    async def readline(self) -> bytes:
        try:
            return await self._timed(self._reader.readline())
        except ValueError:  # longer than the stream's limit: the rest of it is still coming
            await self.refuse(b"* BYE [TOOBIG] Line too long\r\n")
            raise EOFError from None

    async def readexactly(self, n: int) -> bytes:
        return await self._timed(self._reader.readexactly(n))

    def buffered(self) -> bool:
        """Whether the client has sent bytes nobody read yet."""
        return bool(getattr(self._reader, "_buffer", b""))

    async def refuse(self, bye: bytes) -> None:
        with contextlib.suppress(Exception):
            self._writer.write(bye)
            await self._writer.drain()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)


class _TooBig(Exception):
    """A message of an APPEND refused for its size, carried past pymap's message loop."""

    def __init__(self, refusal: NotParseable) -> None:
        super().__init__()
        self.refusal = refusal


class _AppendCommand(AppendCommand):
    """pymap's APPEND, with a message over the limit refused wherever it is in a
    MULTIAPPEND (RFC 3502): pymap's parser took a refused message after the first for
    the end of the list, then failed on what followed, and answered BAD, not NO
    [TOOBIG]. The command is refused whole, so none of its messages is stored."""

    @classmethod
    def _parse_msg(
        cls, name: str, buf: memoryview, params: Params
    ) -> tuple[AppendMessage | None, memoryview]:
        try:
            return super()._parse_msg(name, buf, params)
        except NotParseable as exc:
            if _is_too_big(exc):
                raise _TooBig(exc) from None
            raise

    @classmethod
    def parse(cls, buf: memoryview, params: Params) -> tuple[AppendCommand, memoryview]:
        try:
            return super().parse(buf, params)
        except _TooBig as too_big:
            raise too_big.refusal from None


def _sasl_answer(line: bytes) -> bytes:
    """The bytes of one AUTHENTICATE answer, which must be base64 with its padding and
    nothing else (an empty line is an empty answer); AuthenticationError, a BAD, if not."""
    try:
        return b64decode(line, validate=True)
    except binascii.Error:
        raise AuthenticationError("Invalid base64 in the AUTHENTICATE answer.") from None


def _is_too_big(exc: NotParseable | None) -> bool:
    return exc is not None and exc.code is not None and bytes(exc.code) == b"[TOOBIG]"


class _Commands(Commands):
    """pymap's command parser, with a BAD for input its parsers do not expect.

    Some of them raise instead of reporting a parse error: undecodable bytes in a
    SEARCH string (UnicodeError), a SEARCH nested thousands deep, a number of more
    digits than int() reads (4300; ValueError) in a literal count, a sequence set or a
    section. pymap then ended the session with SERVERBUG and a traceback in the log."""

    def parse(self, buf: memoryview, params: Params) -> tuple[Command, memoryview]:
        try:
            command, rest = super().parse(buf, params)
        except (ValueError, RecursionError):
            return self._invalid(buf, params)
        # IMAP allows NUL nowhere but in a message's bytes (RFC 3501 §9: CHAR8), and no
        # PostgreSQL text holds one: a NUL in a name, a search or a flag is a BAD.
        if not isinstance(command, AppendCommand) and b"\x00" in buf.tobytes():
            return self._invalid(buf, params)
        if isinstance(command, InvalidCommand) and isinstance(command.parse_exc, EightBitName):
            refusal = _EightBitNameCommand(
                params.copy(tag=command.tag),
                command.parse_exc,
                command.command_name,
                command.command_type,
            )
            return refusal, rest
        return command, rest

    def too_big(self, buf: memoryview, params: Params) -> Command:
        """A command refused for the bytes it would bring: NO [TOOBIG] for an APPEND
        (`_too_big_append`), BAD for any other."""
        return self._invalid(buf, params, b"TOOBIG")[0]

    def _invalid(
        self, buf: memoryview, params: Params, code: bytes | None = None
    ) -> tuple[Command, memoryview]:
        """A BAD that names the command ("LOGIN: Invalid arguments."), when it has one."""
        try:
            tag, rest = Tag.parse(buf, params)
        except NotParseable:
            return InvalidCommand(params, None), buf[0:0]
        params = params.copy(tag=tag.value)
        try:
            _space, rest = Space.parse(rest, params)
            atom, _rest = Atom.parse(rest, params)
        except NotParseable:
            return InvalidCommand(params, NotParseable(buf, code)), buf[0:0]
        name = atom.value.upper()
        refusal = NotParseable(buf, code)
        return InvalidCommand(params, refusal, name, self.commands.get(name)), buf[0:0]


class _EightBitNameCommand(InvalidCommand):
    """A command refused for raw 8-bit bytes in a mailbox name (`modutf7.EightBitName`),
    whose BAD says what to send instead: pymap's "Invalid arguments." left a client
    that sent UTF-8 guessing."""

    @property
    def message(self) -> bytes:
        return b"%b: %b" % (self.command_name or b"", EIGHT_BIT_NAME)


class _Connection(IMAPConnection):
    """pymap's connection with bounded command lines and a clean STARTTLS, and without
    its protocol trace, which formats every answer a second time just to drop it
    below DEBUG (and would carry message bodies if it did not).

    `bad_command_limit` BAD replies in a row end the session with a BYE. pymap counts
    them too, but adds its BYE to the last reply after writing it and closes in
    silence; the count is kept here instead, where the BYE still goes out."""

    def __init__(self, *args: Any, max_append_size: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_append_size = max_append_size
        self._after_login = max_append_size + COMMAND_ROOM
        self._logged_in = False
        self._bad_limit = self.bad_command_limit or 0
        self.bad_command_limit = None
        self._bad_in_a_row = 0
        self._brought = 0

    async def run(self, state: ConnectionState) -> None:
        self._state = state
        await super().run(state)

    def _exec(self, future: Awaitable[T]) -> Awaitable[T]:
        """Every command (LOGIN and AUTHENTICATE too) runs through here: one that meets
        an outage (gateway.outages) is answered NO [UNAVAILABLE] (RFC 5530) and the
        session goes on; pymap would end it with BYE [SERVERBUG] and a traceback."""
        return _unavailable_on_outage(super()._exec(future))

    def _logged_in_now(self) -> bool:
        if not self._logged_in:
            self._logged_in = getattr(self._state, "_session", None) is not None
        return self._logged_in

    def _limit(self) -> int:
        return self._after_login if self._logged_in_now() else PRE_LOGIN_COMMAND

    async def _refuse(self, literal: bytes) -> None:
        await cast(_TimedReader, self.reader).refuse(
            b"* BYE [TOOBIG] A literal %b is more than this server takes\r\n" % literal
        )
        raise EOFError

    async def readline(self) -> memoryview:
        """A command line with its non-synchronizing literals (RFC 7888), each one
        checked against the limit before it is read: one over it, or over
        `max_append_size`, ends the connection unread."""
        buf = bytearray(await self.reader.readline())
        while True:
            if not buf.endswith(b"\n"):
                raise EOFError
            found = self._literal_plus.search(buf) if buf.endswith((b"+}\n", b"+}\r\n")) else None
            if found is None:
                self._brought += len(buf)
                return memoryview(buf)
            digits = found.group(1).lstrip(b"0")
            if len(digits) > _MAX_COUNT_DIGITS:
                await self._refuse(b"count of more than %d digits" % _MAX_COUNT_DIGITS)
            length = int(digits or b"0")
            if length > self._max_append_size or self._brought + len(buf) + length > self._limit():
                await self._refuse(b"of %d bytes" % length)
            else:
                buf += await self.reader.readexactly(length)
            buf += await self.reader.readline()

    async def read_command(self, state: ConnectionState) -> Command:
        """pymap's loop over a command's lines, with what they brought counted: a
        synchronizing literal that would take the command past the limit is refused
        before its go-ahead (`_Commands.too_big`), and the client never sends it."""
        self._brought = 0
        line = await self.readline()
        continuations: list[memoryview] = []
        while True:
            params = self.params.copy(ParsingState(continuations=continuations))
            try:
                command, _ = self.commands.parse(line, params)
            except ParsingInterrupt as interrupt:
                expected = interrupt.expected
                if (
                    isinstance(expected, ExpectContinuation)
                    and self._brought + expected.literal_length > self._limit()
                ):
                    return cast(_Commands, self.commands).too_big(line, params)
                await self._interrupt(state, interrupt, continuations)
            else:
                return command

    async def read_continuation(self, literal_length: int) -> memoryview:
        if self._brought + literal_length > self._limit():
            await self._refuse(b"of %d bytes" % literal_length)
        self._brought += literal_length
        return await super().read_continuation(literal_length)

    async def authenticate(
        self, state: ConnectionState, mech_name: bytes
    ) -> ServerCredentials | None:
        """pymap's SASL exchange, with malformed answers refused as RFC 3501 §6.2.2 asks,
        by a tagged BAD, before any login is tried.

        pymap decoded each answer with `b64decode`, which skips what is no base64: an
        answer of "!!!!" was an empty user name, tried as a login, logged and counted
        as a failure of the client's address. Here an answer must be strict base64
        (`_sasl_answer`). An answer that is no UTF-8 is a BAD too: pysasl decodes names
        and passwords unguarded, and the session ended in SERVERBUG, a traceback logged
        for each try of a client not yet logged in."""
        mech = state.auth.get_server(mech_name)
        if not mech:
            return None
        responses: list[ChallengeResponse] = []
        try:
            while True:
                try:
                    creds, final = mech.server_attempt(responses)
                except ServerChallenge as chal:
                    await self.write_response(ResponseContinuation(b64encode(chal.data)))
                    answer = bytes(await self.read_continuation(0)).rstrip(b"\r\n")
                    if answer == b"*":
                        raise AuthenticationError("Authentication canceled.") from None
                    responses.append(ChallengeResponse(chal.data, _sasl_answer(answer)))
                    continue
                if final is not None:
                    await self.write_response(ResponseContinuation(b64encode(final)))
                    await self.read_continuation(0)
                return creds
        except UnicodeDecodeError:
            raise AuthenticationError("Invalid auth response") from None

    async def send_error_disconnect(self) -> None:
        """pymap's BYE [SERVERBUG] for an error that ends the session, but for the end
        of the stream: an IDLE that reached the autologout (`_TimedReader`, which said
        BYE already) or a client that left. pymap read that as a failure of the IDLE and
        said a second BYE, of a server bug."""
        if isinstance(sys.exc_info()[1], EOFError | ConnectionError):
            return
        await super().send_error_disconnect()

    async def start_tls(self) -> None:
        if cast(_TimedReader, self.reader).buffered():
            raise ConnectionResetError("commands pipelined behind STARTTLS")
        await super().start_tls()

    async def write_response(self, resp: Response) -> None:
        if isinstance(resp, CommandResponse) and resp.tag != b"*":
            self._bad_in_a_row = self._bad_in_a_row + 1 if resp.is_bad else 0
        enough = bool(self._bad_limit) and self._bad_in_a_row >= self._bad_limit
        try:
            await resp.async_write(self.writer)
            if enough:
                await _TOO_MANY_BAD.async_write(self.writer)
            await self.writer.drain()
        except ConnectionError:
            pass
        if enough:
            raise EOFError


LOGIN_NO_LONGER_VALID = b"The login of this session is no longer valid; log in again."


class _State(ConnectionState):
    """pymap's connection state, with login offered only under TLS, and NO [TOOBIG] for
    an APPEND over the size limit."""

    def __init__(self, backend: SealgateBackend, *, implicit_tls: bool) -> None:
        super().__init__(backend.login, backend.config)
        self._implicit_tls = implicit_tls
        if implicit_tls:
            self._capability.remove(b"STARTTLS")

    async def do_greeting(self) -> CommandResponse:
        self.auth = self.config.tls_auth if self._implicit_tls else self.config.initial_auth
        return ResponseOk(b"*", self.config.greeting, self.capability)

    async def do_command(self, cmd: Command) -> CommandResponse:
        """pymap answers an APPEND over the limit with BAD, as if it were malformed;
        RFC 7889 (APPENDLIMIT) asks for a tagged NO with RFC 4469's TOOBIG.

        Before each command of a logged-in connection, its login is checked again: a
        connection kept open must not outlive a disabled account, a changed password,
        a revoked app password or a deleted address (it gets BYE and is closed)."""
        session = self._session
        if isinstance(session, Session) and not await session.login_holds():
            log.info("IMAP session of %s ended: its login no longer holds", session.who.address)
            refused = ResponseNo(cmd.tag, LOGIN_NO_LONGER_VALID, ResponseCode.of(b"UNAVAILABLE"))
            refused.add_untagged(ResponseBye(LOGIN_NO_LONGER_VALID))
            return refused
        if self._session is not None and _too_big_append(cmd):
            return ResponseNo(
                cmd.tag,
                b"APPEND: the message is bigger than APPENDLIMIT allows.",
                ResponseCode.of(b"TOOBIG"),
            )
        return await super().do_command(cmd)

    async def do_list(self, cmd: ListCommand) -> tuple[CommandResponse, SelectedMailbox | None]:
        """pymap's LIST and LSUB, the entries written as bytes (`listlines`), not one
        `ListResponse` each formatted on the event loop."""
        entries, updates = await self.session.list_mailboxes(
            cmd.ref_name, cmd.filter, subscribed=cmd.only_subscribed, selected=self._selected
        )
        resp = ResponseOk(cmd.tag, cmd.command + b" completed.")
        kind = b"LSUB" if cmd.only_subscribed else b"LIST"
        resp.add_untagged(ListLines(kind, entries))
        return resp, updates

    async def do_fetch(self, cmd: FetchCommand) -> tuple[CommandResponse, SelectedMailbox | None]:
        """A listing is answered from kept bytes (`listing`); anything else by pymap."""
        if not listing.answerable(cmd.attributes):
            return await super().do_fetch(cmd)
        if not cmd.uid:
            self.selected.hide_expunged = True
        # No attribute of a listing sets \Seen.
        messages, updates = await self.session.fetch_messages(
            self.selected, cmd.sequence_set, False
        )
        answers, expunged = listing.responses(
            cast(Iterable[tuple[int, Message]], messages), self.selected, cmd.attributes
        )
        resp = ResponseOk(cmd.tag, cmd.command + b" completed.")
        if expunged:
            resp.code = ResponseCode.of(b"EXPUNGEISSUED")
        resp.add_untagged(*answers)
        return resp, updates


UNAVAILABLE = b"The mail store is temporarily unavailable; please try again later."


class _Unavailable(ResponseError):
    def get_response(self, tag: bytes) -> Response:
        return ResponseNo(tag, UNAVAILABLE, ResponseCode.of(b"UNAVAILABLE"))


async def _unavailable_on_outage(work: Awaitable[T]) -> T:
    try:
        return await work
    except ResponseError:
        raise
    except Exception as exc:
        if outages.report(exc) is None:
            raise
        raise _Unavailable from None


def _too_big_append(cmd: Command) -> bool:
    """Whether `cmd` is an APPEND pymap's parser refused for a literal's size alone."""
    if not isinstance(cmd, InvalidCommand) or cmd.command_type is None:
        return False
    return issubclass(cmd.command_type, AppendCommand) and _is_too_big(cmd.parse_exc)


class ImapServer:
    """Both IMAP listeners on one event loop; `stop` ends every open connection."""

    def __init__(self, runtime: Runtime, notifier: Notifier, *, clock: Clock = utcnow) -> None:
        settings = runtime.settings
        self.runtime = runtime
        self.ssl_context = server_context(
            settings.path(settings.smtp.tls_cert), settings.path(settings.smtp.tls_key)
        )
        self.backend = SealgateBackend(runtime, notifier, self.ssl_context, clock=clock)
        self._connections = ConnectionCounter(settings.imap.max_connections_per_client)
        self._commands = _Commands()
        self._commands.commands.update(self.backend.config.commands.commands)
        self._commands.register(_AppendCommand)
        modutf7.install()
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        self.tls_port = 0
        if not any(isinstance(f, _NoProtocolTrace) for f in _PYMAP_LOG.filters):
            _PYMAP_LOG.addFilter(_NoProtocolTrace())
        for name in ("pymap.imap", "pymap.imap.state"):
            logger = logging.getLogger(name)
            if not any(isinstance(f, _NoProtocolTrace) for f in logger.filters):
                logger.addFilter(_NoProtocolTrace())

    async def start(self) -> None:
        settings = self.runtime.settings
        host = settings.smtp.listen
        reader = ProxyProtocolReader(ProxyProtocolNoop())
        plain = await asyncio.start_server(
            reader.get_callback(self._plain), host=host, port=settings.imap.port
        )
        self._servers.append(plain)
        tls = await asyncio.start_server(
            reader.get_callback(self._tls),
            host=host,
            port=settings.imap.tls_port,
            ssl=self.ssl_context,
            ssl_handshake_timeout=30,
        )
        self._servers.append(tls)
        self.port = plain.sockets[0].getsockname()[1]
        self.tls_port = tls.sockets[0].getsockname()[1]

    async def _plain(self, reader: StreamReader, writer: StreamWriter, info: SocketInfo) -> None:
        await self._serve(reader, writer, info, implicit_tls=False)

    async def _tls(self, reader: StreamReader, writer: StreamWriter, info: SocketInfo) -> None:
        await self._serve(reader, writer, info, implicit_tls=True)

    async def _serve(
        self, reader: StreamReader, writer: StreamWriter, info: SocketInfo, *, implicit_tls: bool
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        ip = str(info.peername_ip or "unknown")
        if not self._connections.acquire(ip):
            writer.write(b"* BYE Too many connections from your address\r\n")
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            writer.close()
            return
        try:
            config = self.backend.config
            config.apply_context()
            buffered = cast(StreamWriter, _BufferedWriter(writer))
            timed = cast(
                StreamReader,
                _TimedReader(reader, writer, self.runtime.settings.imap.idle_timeout),
            )
            conn = _Connection(
                self._commands,
                config,
                timed,
                buffered,
                info,
                max_append_size=self.runtime.settings.imap.max_append_size,
            )
            state = _State(self.backend, implicit_tls=implicit_tls)
            async with AsyncExitStack() as stack:
                connection_exit.set(stack)
                stack.enter_context(closing(conn))
                await conn.run(state)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                writer.write(bytes(ResponseBye(b"Server shutting down.")))
                writer.close()
        except (ConnectionError, ssl.SSLError, EOFError):
            pass
        except Exception as exc:
            log.error("IMAP session error: %s", type(exc).__name__, exc_info=exc)
        finally:
            self._connections.release(ip)
            if task is not None:
                self._tasks.discard(task)

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._servers.clear()
