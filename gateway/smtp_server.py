"""The SMTP submission edge: STARTTLS and implicit-TLS listeners in front of the pipeline.

The handler stays thin: it authenticates, checks the envelope, and hands the
message to `gateway.pipeline.submit` in a worker thread (pgpy, Argon2 and
SQLAlchemy block). Every reply is a named constant from `gateway.smtp_codes`,
and any unexpected error answers `451 4.3.0` so the client retries later rather
than bouncing the message with a leaked traceback (aiosmtpd's default).
"""

from __future__ import annotations

import asyncio
import binascii
import logging
import ssl
import time
import weakref
from base64 import b64decode
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session

from gateway import accounts, db
from gateway.addresses import InvalidAddress, normalize_address
from gateway.pipeline import ClientInfo, RejectMessage, Sender, Submission, submit
from gateway.ratelimit import ConnectionCounter, FailureWindow
from gateway.runtime import Runtime
from gateway.smtp_codes import (
    AUTH_INVALID,
    AUTH_TOO_MANY_FAILURES,
    BAD_RECIPIENT_SYNTAX,
    IDLE_TIMEOUT,
    MESSAGE_TOO_BIG,
    OK_AUTH,
    QUEUED,
    SENDER_EMPTY,
    SENDER_NOT_OWNED,
    TEMPORARY_FAILURE,
    TOO_MANY_CONNECTIONS,
    TOO_MANY_RECIPIENTS,
    UNKNOWN_LOCAL_RECIPIENT,
)
from gateway.timeutil import Clock, utcnow
from gateway.tls import server_context

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


def refuse_recipient(envelope: Envelope, address: str, limit: int) -> str | None:
    """The reply refusing a RCPT for its syntax or the recipient limit, or None."""
    if len(envelope.rcpt_tos) >= limit:
        return TOO_MANY_RECIPIENTS.format(limit=limit)
    try:
        normalize_address(address)
    except InvalidAddress:
        return BAD_RECIPIENT_SYNTAX.format(rcpt=address[:320])
    return None


def accept_recipient(envelope: Envelope, address: str, rcpt_options: list[str]) -> str:
    envelope.rcpt_tos.append(address)
    envelope.rcpt_options.extend(rcpt_options)
    return "250 2.1.5 Recipient OK"


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
        failed_logins: FailureWindow,
    ) -> None:
        self.runtime = runtime
        self.clock = clock
        self.failed_logins = failed_logins
        self.inflight = 0

    # AUTH PLAIN / LOGIN, parsed here so the password check can run off the event loop.
    async def handle_AUTH(  # noqa: N802  (aiosmtpd hook name)
        self, server: SMTP, session: Session, envelope: Envelope, args: list[str]
    ) -> str | None:
        ip = peer_ip(session)
        if self.failed_logins.blocked(ip):
            return AUTH_TOO_MANY_FAILURES
        credentials = await self._read_credentials(server, args)
        if credentials is None:
            return None  # a syntax reply was already sent
        login, password = credentials
        identity = await asyncio.to_thread(self._authenticate, login, password, ip)
        if not isinstance(identity, SmtpIdentity):
            self.failed_logins.record(ip)
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
            login_bytes, password_bytes = fields[1], fields[2]
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
        """The identity for a right login, else the reply (535, or why it was refused)."""
        rt = self.runtime
        with db.transaction(rt.sessions) as session:
            result = accounts.login_mail_program(
                session,
                rt.hasher,
                rt.settings,
                login,
                password,
                ip=ip,
                now=self.clock(),
                protocol="SMTP",
            )
            address = result.address
            if address is None:
                log.info("SMTP AUTH failed for %r from %s", login[:80], ip)
                return result.reply or AUTH_INVALID
            owned = accounts.owned_addresses(session, address.account_id)
            return SmtpIdentity(address.account_id, address.address, frozenset(owned))

    async def handle_MAIL(  # noqa: N802
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        identity = _identity(session)
        if not address:
            return SENDER_EMPTY
        try:
            sender = normalize_address(address)
        except InvalidAddress:
            return SENDER_NOT_OWNED.format(sender=address[:320])
        if sender not in identity.addresses:
            return SENDER_NOT_OWNED.format(sender=address[:320])
        envelope.mail_from = sender
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(  # noqa: N802
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        refusal = refuse_recipient(envelope, address, self.runtime.settings.smtp.max_recipients)
        if refusal is None and not await asyncio.to_thread(self._deliverable, address):
            refusal = UNKNOWN_LOCAL_RECIPIENT.format(rcpt=address)
        return refusal or accept_recipient(envelope, address, rcpt_options)

    def _deliverable(self, rcpt: str) -> bool:
        """External recipients always are; hosted ones must name an existing address."""
        with db.read_only(self.runtime.sessions) as session:
            if not accounts.is_hosted(session, rcpt):
                return True
            return accounts.find_address(session, rcpt) is not None

    async def handle_DATA(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        identity = _identity(session)
        smtputf8 = "SMTPUTF8" in (opt.upper() for opt in envelope.mail_options)
        submission = Submission(
            sender=Sender(account_id=identity.account_id, address=str(envelope.mail_from)),
            envelope_from=str(envelope.mail_from),
            recipients=list(envelope.rcpt_tos),
            raw=bytes(envelope.original_content or b""),
            client=ClientInfo(
                helo=session.host_name or "",
                ip=peer_ip(session),
                protocol="UTF8SMTPSA" if smtputf8 else "ESMTPSA",
            ),
            received_at=self.clock(),
        )
        self.inflight += 1
        try:
            queue_id = await asyncio.to_thread(submit, self.runtime, submission)
        except RejectMessage as reject:
            log.info("rejected message from %s: %s", submission.sender.address, reject.status)
            return reject.status
        finally:
            self.inflight -= 1
        return QUEUED.format(queue_id=queue_id)

    async def handle_exception(self, error: Exception) -> str:
        log.error("SMTP session error", exc_info=error)
        return TEMPORARY_FAILURE


class SubmissionSMTP(SMTP):
    """aiosmtpd's protocol plus per-client connection limits and our reply texts."""

    def __init__(
        self, *args: Any, connections: ConnectionCounter, implicit_tls: bool, **kwargs: Any
    ) -> None:
        super().__init__(*args, auth_require_tls=True, **kwargs)
        if implicit_tls:
            # The whole connection is TLS, but aiosmtpd only counts STARTTLS as TLS
            # (aiosmtpd issue #281) and would never offer AUTH here.
            self._auth_require_tls = False
        self._connections = connections
        self._counted_ip: str | None = None
        self._over_limit = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None
        super().connection_made(transport)
        if first:
            ip = peer_ip(self.session) if self.session else "unknown"
            if self._connections.acquire(ip):
                self._counted_ip = ip
            else:
                self._over_limit = True

    def connection_lost(self, error: Exception | None) -> None:
        if self._counted_ip is not None:
            self._connections.release(self._counted_ip)
            self._counted_ip = None
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        if self._over_limit:
            await self.push(TOO_MANY_CONNECTIONS)
            if self.transport is not None:
                self.transport.close()
            return
        await super()._handle_client()

    def _timeout_cb(self) -> None:
        # RFC 5321 §4.1.1.10 wants a reason before an idle connection is dropped.
        transport = self.transport
        if isinstance(transport, asyncio.WriteTransport) and not transport.is_closing():
            transport.write((IDLE_TIMEOUT + "\r\n").encode())
        super()._timeout_cb()  # type: ignore[no-untyped-call]

    async def push(self, status: Any) -> None:
        # aiosmtpd's own 552 texts do not name the limit; clients and users need it.
        if isinstance(status, str) and status.startswith("552 Error"):
            status = MESSAGE_TOO_BIG.format(limit=self.data_size_limit)
        await super().push(status)


class SubmissionServer:
    """Both submission listeners (STARTTLS and implicit TLS) on one event loop."""

    def __init__(self, runtime: Runtime, *, clock: Clock = utcnow) -> None:
        smtp = runtime.settings.smtp
        self.runtime = runtime
        self.handler = SubmissionHandler(
            runtime,
            clock=clock,
            failed_logins=FailureWindow(
                smtp.max_auth_failures_per_client, smtp.auth_failure_window
            ),
        )
        self._connections = ConnectionCounter(smtp.max_connections_per_client)
        if not any(isinstance(f, _NoProtocolDebug) for f in _AIOSMTPD_LOG.filters):
            _AIOSMTPD_LOG.addFilter(_NoProtocolDebug())
        self._servers: list[asyncio.Server] = []
        self._sessions: weakref.WeakSet[SubmissionSMTP] = weakref.WeakSet()
        self.submission_port = 0
        self.tls_port = 0

    def _protocol(self, ssl_context: ssl.SSLContext, *, implicit_tls: bool) -> SubmissionSMTP:
        smtp = self.runtime.settings.smtp
        protocol = SubmissionSMTP(
            self.handler,
            connections=self._connections,
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
        )
        self._sessions.add(protocol)
        return protocol

    async def start(self) -> None:
        settings = self.runtime.settings
        smtp = settings.smtp
        context = server_context(settings.path(smtp.tls_cert), settings.path(smtp.tls_key))
        loop = asyncio.get_running_loop()
        starttls = await loop.create_server(
            lambda: self._protocol(context, implicit_tls=False), smtp.listen, smtp.submission_port
        )
        implicit = await loop.create_server(
            lambda: self._protocol(context, implicit_tls=True),
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
