"""The SMTP submission edge: STARTTLS and implicit-TLS listeners in front of the pipeline.

The handler stays thin: it authenticates, checks the envelope, and hands the
message to a worker process (gateway.workers) or, without a pool or for a very
large message, to `gateway.pipeline.submit` in a thread (pgpy, Argon2 and
SQLAlchemy block). Every reply is a named constant from `gateway.smtp_codes`,
and any unexpected error answers `451 4.3.0` so the client retries later rather
than bouncing the message with a leaked traceback (aiosmtpd's default).
"""

from __future__ import annotations

import asyncio
import binascii
import dataclasses
import datetime as dt
import logging
import re
import ssl
import time
import weakref
from base64 import b64decode, b64encode
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session, TLSSetupException, syntax

from gateway import logins, logs, lookups, metrics, outages, postmaster, ratelimit
from gateway.addresses import InvalidAddress, normalize_address, owned_form
from gateway.inflight import InFlightBudget, Reservation
from gateway.pipeline import ClientInfo, RejectMessage, Sender, Submission, submit
from gateway.ratelimit import ConnectionLimiter, FailureCounter
from gateway.readers import ReadPool
from gateway.runtime import Runtime
from gateway.smtp_codes import (
    AUTH_INVALID,
    AUTH_TOO_LONG,
    AUTH_TOO_MANY_FAILURES,
    AUTHZID_REFUSED,
    BAD_RECIPIENT_SYNTAX,
    DOMAIN_DISABLED,
    IDLE_TIMEOUT,
    LOGIN_NO_LONGER_VALID,
    MESSAGE_TOO_BIG,
    OK_AUTH,
    POSTMASTER_UNSET,
    QUEUED,
    SENDER_EMPTY,
    SENDER_NOT_OWNED,
    SERVER_BUSY,
    SERVICE_UNAVAILABLE,
    SMTPUTF8_REQUIRED,
    STORAGE_FULL,
    TEMPORARY_FAILURE,
    TOO_MANY_CONNECTIONS,
    TOO_MANY_RECIPIENTS,
    UNKNOWN_LOCAL_RECIPIENT,
)
from gateway.smtp_data import Outcome, read_data
from gateway.smtp_paths import simple_path
from gateway.timeutil import Clock, utcnow
from gateway.tls import server_context
from gateway.workers import Job, WorkerLost, WorkerPool

log = logging.getLogger(__name__)


class _NoProtocolDebug(logging.Filter):
    """aiosmtpd logs every received line at DEBUG, message bodies included: never pass them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


_AIOSMTPD_LOG = logging.getLogger("mail.log")


@dataclass(frozen=True)
class SmtpIdentity:
    """What a successful AUTH leaves in the session: who may send, and as which addresses."""

    account_id: int
    login: str
    addresses: frozenset[str]
    credential: logins.Credential | None = None
    checked_at: dt.datetime | None = None  # when the login was last found to hold


def refuse_recipient(envelope: Envelope, address: str, limit: int) -> str | None:
    """The reply refusing a RCPT for its syntax or the recipient limit, or None."""
    if len(envelope.rcpt_tos) >= limit:
        return TOO_MANY_RECIPIENTS.format(limit=limit)
    if not address.isascii() and "SMTPUTF8" not in (o.upper() for o in envelope.mail_options):
        return SMTPUTF8_REQUIRED  # RFC 6531 §3.2: the next hop would need it too
    try:
        normalize_address(address)
    except InvalidAddress:
        return BAD_RECIPIENT_SYNTAX.format(rcpt=address[:320])
    return None


def hosted_refusal(found: lookups.Destination, address: str) -> str | None:
    """The reply refusing a hosted recipient (no such address, domain disabled), or None;
    external recipients always pass."""
    if not found.hosted:
        return None
    if found.address is None:
        return UNKNOWN_LOCAL_RECIPIENT.format(rcpt=address)
    if found.disabled_domain is not None:
        return DOMAIN_DISABLED.format(rcpt=address[:320], domain=found.disabled_domain)
    return None


def take_content(envelope: Envelope) -> bytes:
    """The message text, taken out of the envelope: the caller then holds the only
    reference, so a pipeline step that replaces it frees the original at once."""
    content = envelope.original_content or b""
    envelope.content = envelope.original_content = None
    return bytes(content)


def accept_recipient(envelope: Envelope, address: str, rcpt_options: list[str]) -> str:
    envelope.rcpt_tos.append(address)
    envelope.rcpt_options.extend(rcpt_options)
    return "250 2.1.5 Recipient OK"


def outage_reply(outage: outages.Outage) -> str:
    """The reply for a command that met an outage: a full disk 452 4.3.1, else 451 4.3.0."""
    return STORAGE_FULL if outage.kind is outages.Kind.DISK_FULL else SERVICE_UNAVAILABLE


def _identity(session: Session) -> SmtpIdentity:
    identity = session.auth_data
    if not isinstance(identity, SmtpIdentity):
        raise RuntimeError("hook reached without authentication")
    return identity


def peer_ip(session: Session) -> str:
    peer = session.peer
    return str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"


class SubmissionHandler:
    """aiosmtpd hooks for authenticated submission; one instance serves both listeners."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        clock: Clock = utcnow,
        failed_logins: FailureCounter,
        pool: WorkerPool | None = None,
        readers: ReadPool | None = None,
    ) -> None:
        self.runtime = runtime
        self.clock = clock
        self.failed_logins = failed_logins
        self.pool = pool
        # Reads (MAIL's login re-check, RCPT's lookups) never queue behind AUTH's and
        # DATA's writes, which wait for the write lock in the default pool's threads.
        self.readers = readers or ReadPool("smtp-read")
        self.inflight = 0

    # AUTH PLAIN / LOGIN, parsed here so the password check can run off the event loop.
    async def handle_AUTH(  # noqa: N802  (aiosmtpd hook name)
        self, server: SMTP, session: Session, envelope: Envelope, args: list[str]
    ) -> str | None:
        ip = peer_ip(session)
        # In a thread: with [limits] storage on Redis this is a network round trip.
        if await self.readers.run(self.failed_logins.blocked, ip):
            return AUTH_TOO_MANY_FAILURES
        credentials = await self._read_credentials(server, args)
        if credentials is None:
            return None  # a syntax reply was already sent
        login, password = credentials
        identity = await asyncio.to_thread(self._authenticate, login, password, ip)
        if not isinstance(identity, SmtpIdentity):
            await asyncio.to_thread(self.failed_logins.record, ip)
            return identity
        session.authenticated = True
        session.auth_data = identity  # type: ignore[assignment]
        return OK_AUTH

    async def _read_credentials(self, server: SMTP, args: list[str]) -> tuple[str, str] | None:
        mechanism = args[0].upper()
        initial = args[1] if len(args) > 1 else None
        if mechanism == "PLAIN":
            blob = await self._response(server, initial, "")
            if blob is None:
                return None
            fields = blob.split(b"\x00")
            if len(fields) != 3:
                await server.push("501 5.5.2 Cannot split the PLAIN credentials")
                return None
            authzid, login_bytes, password_bytes = fields
            # RFC 4616: acting as another identity is not offered, so an authorization
            # identity is accepted only when it names the login itself.
            if authzid and authzid.lower() != login_bytes.lower():
                await server.push(AUTHZID_REFUSED)
                return None
        else:
            login_blob = await self._response(server, initial, "Username:")
            if login_blob is None:
                return None
            password_blob = await self._response(server, None, "Password:")
            if password_blob is None:
                return None
            login_bytes, password_bytes = login_blob, password_blob
        try:
            return login_bytes.decode("utf-8"), password_bytes.decode("utf-8")
        except UnicodeDecodeError:
            await server.push("501 5.5.2 Credentials must be UTF-8")
            return None

    @staticmethod
    async def _response(server: SMTP, initial: str | None, challenge: str) -> bytes | None:
        if initial is not None:
            if initial == "=":
                return b""
            try:
                return b64decode(initial.encode("ascii"), validate=True)
            except (binascii.Error, UnicodeEncodeError):
                await server.push("501 5.5.2 Cannot decode base64")
                return None
        blob = await server.challenge_auth(challenge)
        return None if blob is MISSING else bytes(blob)

    def _authenticate(self, login: str, password: str, ip: str) -> SmtpIdentity | str:
        """The identity for a right login, else the reply (535, or why it was refused).

        `gateway.logins.check` runs Argon2 (at most once, often not at all thanks to
        the verified-credential cache) outside any transaction and writer lock.
        """
        result = logins.check_for(
            self.runtime, logins.Attempt("SMTP", login, password, ip), now=self.clock()
        )
        if result.account_id is None:
            log.info("SMTP AUTH failed for %r from %s", login[:80], ip)
            return result.reply or AUTH_INVALID
        return SmtpIdentity(
            result.account_id,
            result.login,
            result.addresses,
            result.credential,
            checked_at=self.clock(),
        )

    async def handle_MAIL(  # noqa: N802
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        identity = await self._still_valid(session)
        if identity is None:
            return LOGIN_NO_LONGER_VALID
        if not address or address.strip() == "<>":  # aiosmtpd hands the null path as "<>"
            return SENDER_EMPTY
        try:
            sender = normalize_address(address)
        except InvalidAddress:
            return SENDER_NOT_OWNED.format(sender=address[:320])
        if owned_form(sender, identity.addresses) is None:
            return SENDER_NOT_OWNED.format(sender=address[:320])
        envelope.mail_from = sender
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Sender OK"

    async def _still_valid(self, session: Session) -> SmtpIdentity | None:
        """The session's identity with the account's addresses as they are now, or None
        (and the session no longer authenticated) when its login no longer holds: the
        account or domain disabled, the address gone, the password changed, the app
        password revoked (`gateway.logins.still_valid`). Asked at a MAIL FROM once
        `[security] session_recheck_seconds` have passed since the last answer, so a
        connection kept open does not outlive what let it in, and a busy one costs a
        read per interval, not per message."""
        identity = _identity(session)
        if identity.credential is None:
            return identity
        now = self.clock()
        if identity.checked_at is not None:
            elapsed = (now - identity.checked_at).total_seconds()
            if 0 <= elapsed < self.runtime.settings.security.session_recheck_seconds:
                return identity
        addresses = await self.readers.run(
            logins.still_valid, self.runtime.sessions, identity.credential
        )
        if addresses is None:
            log.info("SMTP session of %s ended: its login no longer holds", identity.login[:80])
            session.authenticated = False
            session.auth_data = None
            return None
        identity = dataclasses.replace(identity, addresses=addresses, checked_at=now)
        session.auth_data = identity  # type: ignore[assignment]
        return identity

    async def handle_RCPT(  # noqa: N802
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if postmaster.names_postmaster(address):
            target = await self.readers.run(postmaster.resolve, self.runtime.sessions, address)
            if target is None:
                return POSTMASTER_UNSET.format(rcpt=address[:320])
            address = target
        refusal = refuse_recipient(envelope, address, self.runtime.settings.smtp.max_recipients)
        if refusal is None:
            found = await lookups.destination_at_rcpt(self.runtime.sessions, address, self.readers)
            refusal = hosted_refusal(found, address)
        return refusal or accept_recipient(envelope, address, rcpt_options)

    async def handle_DATA(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        identity = _identity(session)
        smtputf8 = "SMTPUTF8" in (opt.upper() for opt in envelope.mail_options)
        written = str(envelope.mail_from)
        # The pipeline finds her keys and mailboxes under the form her address is stored in;
        # the envelope goes on as she wrote it (an A-label needs no SMTPUTF8).
        address = owned_form(written, identity.addresses) or written
        submission = Submission(
            sender=Sender(account_id=identity.account_id, address=address),
            envelope_from=written,
            recipients=list(envelope.rcpt_tos),
            raw=take_content(envelope),
            client=ClientInfo(
                helo=session.host_name or "",
                ip=peer_ip(session),
                protocol="UTF8SMTPSA" if smtputf8 else "ESMTPSA",
            ),
            received_at=self.clock(),
        )
        self.inflight += 1
        try:
            if self._in_worker(submission):
                return await self._in_pool(submission)
            queue_id = await asyncio.to_thread(submit, self.runtime, submission)
        except RejectMessage as reject:
            log.info("rejected message from %s: %s", submission.sender.address, reject.status)
            return reject.status
        except Exception as error:
            # Answered here, not in handle_exception: a reply from this hook ends the
            # mail transaction, so the client's next MAIL FROM starts a new one.
            outage = outages.report(error)
            if outage is None:
                raise
            return outage_reply(outage)
        finally:
            self.inflight -= 1
        return QUEUED.format(queue_id=queue_id)

    def _in_worker(self, submission: Submission) -> bool:
        """Worker processes take messages up to a size; larger ones would cost their size
        again in the copy, so they stay here (docs/configuration.md, [workers])."""
        limit = self.runtime.settings.workers.in_process_above
        return self.pool is not None and len(submission.raw) <= limit

    async def _in_pool(self, submission: Submission) -> str:
        assert self.pool is not None
        job = Job(
            account_id=submission.sender.account_id,
            sender=submission.sender.address,
            envelope_from=submission.envelope_from,
            recipients=tuple(submission.recipients),
            raw=submission.raw,
            client=submission.client,
            received_at=submission.received_at,
            log_id=logs.current_id(),
            queue_id=submission.queue_id,
        )
        try:
            outcome = await self.pool.run(job)
        except WorkerLost:
            # Not committed (the pool looked), not answered: the client still has the
            # message and retries.
            log.warning("a worker ended while it held a message from %s", job.sender)
            return TEMPORARY_FAILURE
        if outcome is None:
            return TEMPORARY_FAILURE  # the worker logged why
        if outcome.outage is not None:
            return outage_reply(outcome.outage)  # the worker logged it
        if outcome.reject:
            log.info("rejected message from %s: %s", job.sender, outcome.reject)
            return outcome.reject
        metrics.record_handling(
            outcome.methods,
            recipients=outcome.recipients,
            encrypted=outcome.encrypted,
            seconds=None if outcome.recovered else outcome.seconds,
        )
        return QUEUED.format(queue_id=outcome.queue_id)

    async def handle_exception(self, error: Exception) -> str:
        outage = outages.report(error)
        if outage is not None:
            return outage_reply(outage)  # one line per outage, not a traceback per session
        log.error("SMTP session error", exc_info=error)
        return TEMPORARY_FAILURE


# What a client that hangs up in the middle of TLS leaves behind: nothing the server
# did wrong, so one INFO line and no traceback (see gateway/logs.py).
TLS_DROPS = (TLSSetupException, ssl.SSLError, ConnectionResetError, BrokenPipeError)


def _dropped_during_handshake(port: int, connected: list[bool], log_id: str) -> None:
    """Runs when an implicit-TLS protocol object goes away. asyncio never hands a
    protocol whose handshake failed its connection (nor says so outside debug mode),
    so this is the only place that notices."""
    if not connected:
        with logs.event_id(log_id):
            log.info("a client dropped the connection during the TLS handshake (port %d)", port)


class SubmissionSMTP(SMTP):
    """aiosmtpd's protocol plus per-client connection limits and our reply texts."""

    def __init__(
        self,
        *args: Any,
        connections: ConnectionLimiter,
        readers: ReadPool,
        implicit_tls: bool,
        budget: InFlightBudget | None = None,
        min_data_rate: float = 500.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, auth_require_tls=True, **kwargs)
        self._min_data_rate = min_data_rate
        self._data_progress: Callable[[int], None] | None = None  # while DATA is read
        self._budget = budget
        self._hold: Reservation | None = None
        self.log_id = logs.new_id("s")
        self._connected: list[bool] = []
        self._drop_logged = False
        if implicit_tls:
            # The whole connection is TLS, but aiosmtpd only counts STARTTLS as TLS
            # (aiosmtpd issue #281) and would never offer AUTH here.
            self._auth_require_tls = False
        self._connections = connections
        self._readers = readers
        self._counted_ip: str | None = None
        self._lost = False
        self._quit = False

    def watch_handshake(self, port: int) -> None:
        weakref.finalize(self, _dropped_during_handshake, port, self._connected, self.log_id)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._connected.append(True)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        # After QUIT and its 221, a client closing without TLS close_notify (as Python's
        # smtplib and many others do) is the end of a session, not a drop.
        dropped = isinstance(error, TLS_DROPS) and not self._quit
        if dropped and self.session is not None and not self._drop_logged:
            with logs.event_id(self.log_id):
                log.info(
                    "client %s dropped the connection mid-session (%s)",
                    peer_ip(self.session),
                    getattr(error, "reason", None) or type(error).__name__,
                )
        self._lost = True
        self._release()
        super().connection_lost(error)

    def _release(self) -> None:
        ip, self._counted_ip = self._counted_ip, None
        if ip is not None:
            # Off the loop: with [limits] storage on Redis this is a network round trip.
            self._readers.spawn(self._connections.release, ip)

    async def smtp_QUIT(self, arg: str) -> None:  # noqa: N802  (aiosmtpd's name)
        self._quit = not arg  # "QUIT x" is answered 501 and the session goes on
        await super().smtp_QUIT(arg)

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, TLS_DROPS):
            ip = peer_ip(self.session) if self.session else "unknown"
            log.info("client %s dropped the connection during the STARTTLS handshake", ip)
            self._drop_logged = True
            return TEMPORARY_FAILURE
        return await super().handle_exception(error)

    async def _handle_client(self) -> None:
        # Every line logged for this connection (pipeline threads included) names it.
        logs.bind_id(self.log_id)
        ip = peer_ip(self.session) if self.session else "unknown"
        log.debug("connection from %s", ip)
        # Counted here rather than in connection_made, which cannot wait for Redis.
        if not await self._readers.run(self._connections.acquire, ip):
            await self.push(TOO_MANY_CONNECTIONS)
            if self.transport is not None:
                self.transport.close()
            return
        self._counted_ip = ip
        if self._lost:  # the client left while the count was taken
            self._release()
            return
        await super()._handle_client()

    def _expected_size(self) -> int:
        """The size MAIL FROM declared (SIZE=, RFC 1870), else the largest allowed."""
        limit = self.data_size_limit or 0
        assert self.envelope is not None
        for option in self.envelope.mail_options:
            name, _eq, value = option.partition("=")
            if name.upper() == "SIZE" and value.isdigit():
                return min(int(value), limit) if limit else int(value)
        return limit

    async def smtp_DATA(self, arg: str) -> None:  # noqa: N802  (aiosmtpd command name)
        """aiosmtpd's DATA with the text read into one buffer (gateway.smtp_data), after
        the message is reserved in the process's in-flight budget (gateway.inflight):
        past the budget, 451 4.3.1 and the client retries."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return  # answered by aiosmtpd's checks
        envelope = self.envelope
        if envelope is None or not envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        hold = self._budget.try_reserve(self._expected_size()) if self._budget else None
        if self._budget is not None and hold is None:
            log.info("DATA refused for now: %d bytes of messages in flight", self._budget.used)
            # The transaction failed; the client starts anew (aiosmtpd leaves it untyped).
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            await self.push(SERVER_BUSY)
            return
        self._hold = hold
        try:
            await self._receive_data(envelope)
        finally:
            self._hold = None
            if hold is not None:
                hold.release()  # committed (250) or refused: either way no longer held

    async def _receive_data(self, envelope: Envelope) -> None:
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        self._data_progress = self._data_deadline()
        try:
            text = await read_data(
                self._reader, size_limit=self.data_size_limit, line_limit=self.line_length_limit
            )
        except asyncio.CancelledError:
            log.info("connection lost during DATA")
            self._writer.close()
            raise
        finally:
            self._data_progress = None
        if text.outcome is not Outcome.COMPLETE:
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            await self.push(
                "500 Line too long (see RFC5321 4.5.3.1.6)"
                if text.outcome is Outcome.LINE_TOO_LONG
                else MESSAGE_TOO_BIG.format(limit=self.data_size_limit)
            )
            return
        # The envelope is the only holder: the handler takes the bytes from it.
        envelope.content = envelope.original_content = text.content
        del text
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("250 OK" if status is MISSING else status)

    def data_received(self, data: bytes) -> None:
        # The bytes as they arrive (after TLS): the reader hands DATA's text over only
        # at its end or at its buffer's limit, too late to move the deadline.
        if self._data_progress is not None:
            self._data_progress(len(data))
        super().data_received(data)

    def _data_deadline(self) -> Callable[[int], None]:
        """The deadline of DATA: `idle_timeout` from the 354, plus each chunk's size over
        `[smtp] min_data_rate` (Postfix's smtpd_min_data_rate). aiosmtpd restarts its
        idle timer only per command, so a 25 MiB message on a link slower than about
        85 kB/s was cut off at `idle_timeout`; restarting it per chunk instead would let
        a client trickling a byte at a time hold the connection for ever."""
        loop = self.loop
        deadline = loop.time() + self._timeout_duration

        def progress(size: int) -> None:
            nonlocal deadline
            deadline += size / self._min_data_rate
            # At least a moment: aiosmtpd takes a duration of 0 for "the full timeout".
            self._reset_timeout(max(deadline - loop.time(), 0.001))

        return progress

    async def _call_handler_hook(self, command: str, *args: Any) -> Any:
        # A client whose data outgrew its declared SIZE holds the real size before the
        # pipeline (where a message costs most) runs, or waits its turn. The hold ends
        # when the pipeline has committed or refused, before the reply goes out.
        hold, envelope = self._hold, self.envelope
        if command != "DATA" or hold is None or envelope is None:
            return await super()._call_handler_hook(command, *args)
        try:
            if not hold.resize(len(envelope.original_content or b"")):
                return SERVER_BUSY
            return await super()._call_handler_hook(command, *args)
        finally:
            hold.release()

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's path reading, with `<dot-atom@domain>` read fast (gateway.smtp_paths).

        The email package's parser raises IndexError on some malformed paths (`"q"@`);
        that is a syntax error of the client's (aiosmtpd's reply for (None, None)), not
        a fault of the server's (451 and a traceback in the log)."""
        if not _is_utf8(arg):
            return None, None  # 8-bit bytes that are not UTF-8: no address, a syntax error
        simple = simple_path(arg)
        if simple is not None:
            local = simple[0].rpartition("@")[0]
            if not self.local_part_limit or len(local) <= self.local_part_limit:
                return simple
        try:
            address, rest = super()._getaddr(arg)
        except (IndexError, ValueError):
            return None, None
        if address not in (None, "<>") and _malformed(address):
            return None, None
        return address, rest

    def _timeout_cb(self) -> None:
        # RFC 5321 §4.1.1.10 wants a reason before an idle connection is dropped.
        transport = self.transport
        if isinstance(transport, asyncio.WriteTransport) and not transport.is_closing():
            transport.write((IDLE_TIMEOUT + "\r\n").encode())
        super()._timeout_cb()  # type: ignore[no-untyped-call]

    async def challenge_auth(
        self,
        challenge: str | bytes,
        encode_to_b64: bool = True,
        log_client_response: bool = False,
    ) -> Any:
        """aiosmtpd's challenge, with a client response longer than the line limit refused.

        aiosmtpd reads the response with `readline`, which raises on an overlong line
        after keeping only part of it, so the rest was read as commands (a 451 and a
        traceback). Here the whole line is drained and answered `500 5.5.6` (RFC 4954
        §4), and the next command is read from the start of the next line.
        """
        del log_client_response  # responses carry passwords: never logged
        raw = challenge.encode() if isinstance(challenge, str) else challenge
        await self.push(b"334 " + (b64encode(raw) if encode_to_b64 else raw))
        try:
            line = await self._reader.readuntil(b"\n")
        except asyncio.IncompleteReadError:
            return MISSING  # the client hung up mid-exchange
        except asyncio.LimitOverrunError as overrun:
            await self._drain_line(overrun.consumed)
            await self.push(AUTH_TOO_LONG)
            return MISSING
        blob = line.strip()
        if blob == b"*":
            await self.push("501 5.7.0 Authentication aborted")
            return MISSING
        try:
            return b64decode(blob, validate=True)
        except binascii.Error:
            await self.push("501 5.5.2 Cannot decode base64")
            return MISSING

    async def _drain_line(self, consumed: int) -> None:
        """Discard the rest of an overlong line, its end included, in bounded pieces."""
        while True:
            await self._reader.read(consumed)
            try:
                await self._reader.readuntil(b"\n")
                return
            except asyncio.LimitOverrunError as overrun:
                consumed = overrun.consumed
            except asyncio.IncompleteReadError:
                return

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str) -> None:  # noqa: N802  (aiosmtpd command name)
        """A second STARTTLS inside TLS is refused (aiosmtpd began a second handshake
        inside the first, which failed with a logged traceback)."""
        if self._tls_protocol is not None:
            await self.push("503 5.5.1 TLS is already active")
            return
        await super().smtp_STARTTLS(arg)

    async def push(self, status: Any) -> None:
        if status == "250-AUTH ":
            return  # aiosmtpd's EHLO line for a listener with no mechanism (the MX): none
        # aiosmtpd's own 552 texts do not name the limit; clients and users need it.
        if isinstance(status, str) and status.startswith("552 Error"):
            status = MESSAGE_TOO_BIG.format(limit=self.data_size_limit)
        if isinstance(status, str) and not _is_utf8(status):
            # A reply that quotes the client's bytes (aiosmtpd's "502 Could not VRFY …"):
            # bytes that were not UTF-8 are shown as "?" rather than failing the reply.
            status = status.encode("utf-8", "replace").decode("utf-8")
        await super().push(status)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# RFC 5321 §4.1.2 Quoted-string: qtextSMTP or a quoted pair, never a control byte.
_QUOTED_LOCAL = re.compile(r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e\x80-\U0010ffff]|\\[\x20-\x7e])*"')


def _malformed(address: str) -> bool:
    """A path the email parser read leniently that RFC 5321 does not allow: a control
    byte anywhere, a quoted local part the grammar does not produce, or a domain that
    took in the path's own ">" (`<"\\"@x>`: the escaped quote never closes)."""
    local, _, domain = address.rpartition("@")
    if _CONTROL.search(address) or any(c in domain for c in '<>"\\ '):
        return True
    return local.startswith('"') and _QUOTED_LOCAL.fullmatch(local) is None


def _is_utf8(text: str) -> bool:
    """Whether `text` came from valid UTF-8 (aiosmtpd keeps other bytes as surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class SubmissionServer:
    """Both submission listeners (STARTTLS and implicit TLS) on one event loop."""

    def __init__(
        self, runtime: Runtime, *, clock: Clock = utcnow, pool: WorkerPool | None = None
    ) -> None:
        smtp = runtime.settings.smtp
        self.runtime = runtime
        self.handler = SubmissionHandler(
            runtime,
            clock=clock,
            pool=pool,
            failed_logins=ratelimit.failure_counter(
                runtime.settings.limits.storage,
                smtp.max_auth_failures_per_client,
                smtp.auth_failure_window,
                "submission",
            ),
        )
        self._connections = ratelimit.connection_limiter(
            runtime.settings.limits.storage, smtp.max_connections_per_client, "submission"
        )
        if not any(isinstance(f, _NoProtocolDebug) for f in _AIOSMTPD_LOG.filters):
            _AIOSMTPD_LOG.addFilter(_NoProtocolDebug())
        self._servers: list[asyncio.Server] = []
        self._sessions: weakref.WeakSet[SubmissionSMTP] = weakref.WeakSet()
        self.submission_port = 0
        self.tls_port = 0
        self.ssl_context: ssl.SSLContext | None = None

    def _protocol(self, ssl_context: ssl.SSLContext, *, implicit_tls: bool) -> SubmissionSMTP:
        smtp = self.runtime.settings.smtp
        protocol = SubmissionSMTP(
            self.handler,
            connections=self._connections,
            readers=self.handler.readers,
            budget=self.runtime.inflight,
            hostname=smtp.hostname,
            ident="sealgate ESMTP",
            data_size_limit=smtp.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            implicit_tls=implicit_tls,
            tls_context=None if implicit_tls else ssl_context,
            require_starttls=not implicit_tls,
            auth_required=True,
            timeout=smtp.idle_timeout,
            min_data_rate=smtp.min_data_rate,
        )
        self._sessions.add(protocol)
        return protocol

    def _implicit_protocol(self, ssl_context: ssl.SSLContext) -> SubmissionSMTP:
        protocol = self._protocol(ssl_context, implicit_tls=True)
        protocol.watch_handshake(self.tls_port)
        return protocol

    async def start(self) -> None:
        settings = self.runtime.settings
        smtp = settings.smtp
        context = server_context(settings.path(smtp.tls_cert), settings.path(smtp.tls_key))
        # Both listeners share this one context: SIGHUP reloads its certificate.
        self.ssl_context = context
        loop = asyncio.get_running_loop()
        starttls = await loop.create_server(
            lambda: self._protocol(context, implicit_tls=False), smtp.listen, smtp.submission_port
        )
        implicit = await loop.create_server(
            lambda: self._implicit_protocol(context),
            smtp.listen,
            smtp.tls_port,
            ssl=context,
            ssl_handshake_timeout=30,
        )
        self._servers = [starttls, implicit]
        self.submission_port = starttls.sockets[0].getsockname()[1]
        self.tls_port = implicit.sockets[0].getsockname()[1]
        log.info(
            "SMTP submission listening on %s:%d (STARTTLS) and %s:%d (TLS)",
            smtp.listen,
            self.submission_port,
            smtp.listen,
            self.tls_port,
        )

    async def stop(self, grace: float = 30.0) -> None:
        await stop_servers(self._servers, self._sessions, lambda: self.handler.inflight, grace)
        self._servers = []
        self.handler.readers.close()


async def stop_servers(
    servers: list[asyncio.Server],
    sessions: weakref.WeakSet[SubmissionSMTP],
    inflight: Callable[[], int],
    grace: float,
) -> None:
    """Stop accepting, let messages in the pipeline commit and be answered, then hang up.

    A message whose transaction has not committed when the process ends was never
    answered `250`, so the client still holds it and will retry.
    """
    for server in servers:
        server.close()
    deadline = time.monotonic() + grace
    while inflight() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    for protocol in list(sessions):
        if protocol.transport is not None:
            protocol.transport.close()
    deadline = time.monotonic() + 5
    while any(p.transport is not None for p in sessions) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    for server in servers:
        await server.wait_closed()
