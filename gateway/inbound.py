"""Inbound SMTP (the MX side): mail from anywhere for the hosted addresses, no AUTH.

It relays nothing: a RCPT outside the hosted domains is refused with 550 5.7.1,
an unknown hosted address with 550 5.1.1. Accepted mail gets the same checks as
submitted mail (odd line ends in the header section made plain, see
gateway.mail.header_line_ends; MIME structure; X-Sealgate-* headers removed), one Received
header, and is stored in each recipient's INBOX, where the autoresponder sees it,
in one transaction before the `250`. A message that is exactly one RFC 3156
PGP/MIME encrypted message (gateway.pipeline.passthrough.is_pgp_mime) is stored as
encrypted, so the webmail decrypts it for its reader (gateway.reading, in the
sandbox) as it does mail encrypted here; anything else, a clear part beside an
encrypted one included, is stored and shown as not encrypted. A message that carries more than
MAX_RECEIVED `Received:` fields is in a mail loop (RFC 5321 §6.3) and is refused
before anything is stored or answered. A hosted domain with an internationalized
name takes mail in both forms of it, the A-label (`xn--…`, all a sender without
SMTPUTF8 may write) and the U-label, whichever of them an admin added. An
`Autocrypt:` header from an external
sender updates that sender's peer state in the same transaction (gateway.autocrypt).
A session that collects ERROR_LIMIT refusals or sends JUNK_LIMIT commands that carry
no mail since its last accepted message is closed with 421 (InboundSMTP): RCPT
answers would otherwise enumerate the users at wire speed, and NOOP would keep a
connection for ever. Refusals are also counted per client across its connections
(ProbeGuard), so reconnecting does not buy a prober more guesses.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import ssl
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy.orm as so
from aiosmtpd.smtp import Envelope, Session

from gateway import (
    accounts,
    autoresponder,
    db,
    lookups,
    mailbox,
    outages,
    postmaster,
    ratelimit,
    rawheaders,
)
from gateway.addresses import other_form
from gateway.admin import maillog
from gateway.autocrypt import inbound as autocrypt_inbound
from gateway.mail import header_line_ends
from gateway.models import Address
from gateway.pipeline.context import ClientInfo, new_queue_id
from gateway.pipeline.errors import RejectMessage
from gateway.pipeline.passthrough import is_pgp_mime
from gateway.pipeline.received import trace_header
from gateway.pipeline.structure import check_structure
from gateway.pipeline.triggers import strip_control_headers
from gateway.readers import ReadPool
from gateway.runtime import Runtime
from gateway.settings import Network, networks
from gateway.smtp_codes import (
    POSTMASTER_UNSET,
    PROBING_AT_CONNECT,
    PROBING_AT_RCPT,
    QUEUED,
    RELAY_DENIED,
    TEMPORARY_FAILURE,
    TOO_MANY_IDLE_COMMANDS,
    TOO_MANY_REFUSALS,
    UNKNOWN_LOCAL_RECIPIENT,
)
from gateway.smtp_server import (
    SubmissionSMTP,
    accept_recipient,
    hosted_refusal,
    outage_reply,
    peer_ip,
    refuse_recipient,
    stop_servers,
    take_content,
)
from gateway.timeutil import Clock, utcnow
from gateway.tls import server_context

log = logging.getLogger(__name__)

# RFC 5321 6.3: "a large rejection threshold, normally at least 100 Received entries".
MAX_RECEIVED = 100
TOO_MANY_HOPS = "554 5.4.6 Too many hops ({count} Received header fields): a mail loop"

# Per session, since its last accepted message (Postfix's smtpd_hard_error_limit and
# smtpd_junk_command_limit): past these the next command gets 421 and the connection
# ends. Refused commands are what a prober collects (RCPT answers 550 5.1.1 for an
# unknown address); commands that carry no mail restart the idle timer, so without a
# limit a client could keep its connection for ever.
ERROR_LIMIT = 20
JUNK_LIMIT = 100
JUNK_COMMANDS = frozenset({"NOOP", "RSET", "VRFY", "EXPN", "HELP", "HELO", "EHLO"})


class ProbeGuard:
    """Refused commands per client over all its connections: Postfix's anvil, for refusals.

    The per-session limits end one connection, but a prober who reconnects starts them
    afresh. Here every 5xx reply the MX gives (unknown address, relaying denied, bad
    syntax, a refused message) counts for the client, an IPv4 address or an IPv6 /64
    (`ratelimit.client_key`), for `[smtp] inbound_refusal_window` seconds, whatever
    connection it came on; an accepted message does not reset it, or one message to a
    known address between two rounds of guesses would. A client with
    `inbound_refusal_limit` refusals in the window is refused until the oldest of them
    leaves it: at connect with `421 4.7.0` (as Postfix's anvil answers a client over its
    connection rate, smtpd_client_connection_rate_limit), and each RCPT of a connection
    already open with `450 4.7.1` (as Postfix answers a client over its recipient rate,
    smtpd_client_recipient_rate_limit). The RCPT answer is checked before the address
    is looked up and is the same for every address, so it tells nothing.

    Both replies are temporary, as Postfix's are, because the count is a rate, not a
    verdict on the client or the message: a real mail server that shares its address
    (a large provider's outbound pool, a NAT) and was pushed over by others, or that sent
    a burst to old addresses, keeps the mail in its queue and delivers it once the
    window has passed; a 5xx would bounce real mail for another sender's guesses.

    The counts live where `[limits] storage` says (gateway.ratelimit): in the serve
    process's memory by default, read on the event loop without I/O, or in Redis, one
    round trip per RCPT and per refusal, shared by every serve process. Clients in
    `inbound_refusal_exempt` (loopback by default: Postfix in front relays everyone's
    mail from one address, docs/postfix.md) are never counted.
    """

    def __init__(
        self, counter: ratelimit.RefusalCounter | None, exempt: tuple[Network, ...] = ()
    ) -> None:
        self.counter = counter
        self._exempt = exempt

    def key(self, ip: str) -> str | None:
        """The name the client at `ip` is counted under; None when it is not counted."""
        if self.counter is None:
            return None
        try:
            address = ipaddress.ip_address(ip.partition("%")[0])
        except ValueError:
            return ratelimit.client_key(ip)
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self._exempt):
            return None
        return ratelimit.client_key(ip)

    async def blocked(self, key: str | None) -> bool:
        counter = self.counter
        if key is None or counter is None:
            return False
        if counter.in_process:
            return counter.blocked(key)
        return await asyncio.to_thread(counter.blocked, key)

    async def record(self, key: str | None) -> bool:
        """Count a refusal; whether the client has now reached the limit."""
        counter = self.counter
        if key is None or counter is None:
            return False
        if counter.in_process:
            count = counter.record(key)
        else:
            count = await asyncio.to_thread(counter.record, key)
        return count >= counter.limit


def _deliverable(session: so.Session, rcpt: str) -> Address | None:
    address = accounts.find_deliverable(session, rcpt)
    if address is None and (other := other_form(rcpt)) is not None:
        address = accounts.find_deliverable(session, other)
    return address


def receive(
    runtime: Runtime,
    *,
    envelope_from: str,
    recipients: list[str],
    raw: bytes,
    client: ClientInfo,
    clock: Clock = utcnow,
) -> str:
    """Store one inbound message for its hosted recipients; returns the queue id."""
    smtp = runtime.settings.smtp
    # Before anything reads a header: the checks, the mailbox and IMAP clients read it alike.
    raw = header_line_ends.normalize(raw)
    check_structure(raw, max_depth=smtp.max_mime_depth, max_parts=smtp.max_mime_parts)
    hops = sum(1 for field in rawheaders.headers(raw) if field.name.lower() == "received")
    if hops > MAX_RECEIVED:
        raise RejectMessage(TOO_MANY_HOPS.format(count=hops))
    now = clock()
    queue_id = new_queue_id()
    learnt = autocrypt_inbound.observe(runtime, raw, now)
    raw = trace_header(
        client, hostname=smtp.hostname, queue_id=queue_id, recipients=recipients, when=now
    ) + strip_control_headers(raw)
    encrypted = is_pgp_mime(raw)
    logged = maillog.inbound_message(queue_id, raw, envelope_from=envelope_from)
    with db.transaction(runtime.sessions) as session:
        answerable: bool | None = None  # asked once, and only of an away reply
        delivered: set[int] = set()
        for rcpt in dict.fromkeys(r.lower() for r in recipients):
            address = _deliverable(session, rcpt)
            if address is None:
                raise RejectMessage(UNKNOWN_LOCAL_RECIPIENT.format(rcpt=rcpt))
            if address.id in delivered:  # an alias and its address: one copy
                continue
            delivered.add(address.id)
            maillog.record_inbound(session, logged, recipient=rcpt, now=now)
            mailbox.store(
                session,
                address,
                raw,
                queue_id=queue_id,
                envelope_from=envelope_from,
                now=now,
                encrypted=encrypted,
            )
            if not lookups.has_autoresponder(session, address.id):
                continue
            if answerable is None:
                answerable = _answerable(session, envelope_from)
            if answerable:
                autoresponder.respond(
                    session, address, raw, envelope_from=envelope_from, now=now, queue_id=queue_id
                )
        if learnt is not None:
            autocrypt_inbound.record(session, learnt, now)
    log.info(
        "received %s for %d hosted recipient(s), %d bytes", queue_id, len(recipients), len(raw)
    )
    return queue_id


def _answerable(session: so.Session, envelope_from: str) -> bool:
    """Whether an away reply may go to this return path. Hosted users' own mail comes by
    submission: over the MX, a hosted return path is a stranger's choice, and the reply
    would put an answer to a message they never sent into a hosted user's mailbox."""
    return not (envelope_from and accounts.is_hosted(session, envelope_from))


def _reverse_path(mail_from: str | None) -> str:
    """aiosmtpd keeps a null sender as "<>"; store it as the empty return path it is."""
    value = (mail_from or "").strip()
    return "" if value in ("", "<>") else value


class InboundHandler:
    def __init__(self, runtime: Runtime, *, clock: Clock = utcnow) -> None:
        self.runtime = runtime
        self.clock = clock
        # RCPT's reads never queue behind DATA's writes waiting for the lock (gateway.readers).
        self.readers = ReadPool("mx-read")
        self.inflight = 0

    async def handle_RCPT(  # noqa: N802  (aiosmtpd hook name)
        self,
        server: InboundSMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if await server.probing_blocked():
            server.refused_for_now()
            return PROBING_AT_RCPT
        if postmaster.names_postmaster(address):
            target = await self.readers.run(postmaster.resolve, self.runtime.sessions, address)
            if target is None:
                server.refused_for_now()
                return POSTMASTER_UNSET.format(rcpt=address[:320])
            address = target
        refusal = refuse_recipient(envelope, address, self.runtime.settings.smtp.max_recipients)
        if refusal is None:
            found = await lookups.destination_at_rcpt(self.runtime.sessions, address, self.readers)
            if not found.hosted and (other := other_form(address)) is not None:
                found = await lookups.destination_at_rcpt(
                    self.runtime.sessions, other, self.readers
                )
            refusal = RELAY_DENIED if not found.hosted else hosted_refusal(found, address)
        return refusal or accept_recipient(envelope, address, rcpt_options)

    async def handle_DATA(  # noqa: N802
        self, server: InboundSMTP, session: Session, envelope: Envelope
    ) -> str:
        smtputf8 = "SMTPUTF8" in (opt.upper() for opt in envelope.mail_options)
        tls = session.ssl is not None
        protocol = ("UTF8SMTP" if smtputf8 else "ESMTP") + ("S" if tls else "")
        self.inflight += 1
        try:
            queue_id = await asyncio.to_thread(
                receive,
                self.runtime,
                envelope_from=_reverse_path(envelope.mail_from),
                recipients=list(envelope.rcpt_tos),
                raw=take_content(envelope),
                client=ClientInfo(
                    helo=session.host_name or "", ip=peer_ip(session), protocol=protocol
                ),
                clock=self.clock,
            )
        except RejectMessage as reject:
            return reject.status
        except Exception as error:
            # Answered by this hook, so the mail transaction ends (see smtp_server).
            outage = outages.report(error)
            if outage is None:
                raise
            return outage_reply(outage)
        finally:
            self.inflight -= 1
        server.message_accepted()
        return QUEUED.format(queue_id=queue_id)

    async def handle_exception(self, error: Exception) -> str:
        outage = outages.report(error)
        if outage is not None:
            return outage_reply(outage)
        log.error("inbound SMTP session error", exc_info=error)
        return TEMPORARY_FAILURE


class InboundSMTP(SubmissionSMTP):
    """The MX session: the submission protocol plus the per-session error and junk limits,
    and the per-client refusal count over all sessions (ProbeGuard).

    Submission clients are logged in and limited by their account; an MX client is
    anyone, so what one session may cost without carrying mail is bounded here.
    """

    def __init__(self, *args: Any, guard: ProbeGuard | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard = guard or ProbeGuard(None)
        self._probe_key: str | None = None  # the client's name in the guard's count
        self._over_limit_logged = False
        self._refused = 0  # 5xx replies (and `refused_for_now`) since the last accepted message
        self._junk = 0  # JUNK_COMMANDS since the last accepted message
        self._smtp_methods = {
            name: self._counted(name, method) for name, method in self._smtp_methods.items()
        }

    async def _handle_client(self) -> None:
        self._probe_key = self._guard.key(peer_ip(self.session) if self.session else "unknown")
        if await self._guard.blocked(self._probe_key):
            # Before the connection is counted or greeted: a refused prober costs little.
            await self.push(PROBING_AT_CONNECT)
            if self.transport is not None:
                self.transport.close()
            return
        await super()._handle_client()

    async def probing_blocked(self) -> bool:
        """Whether this client is past the refusal limit over all its connections."""
        return await self._guard.blocked(self._probe_key)

    def message_accepted(self) -> None:
        """A message was stored: the client is a sender, not a prober; both counts restart."""
        self._refused = self._junk = 0

    def _counted(
        self, name: str, method: Callable[[str], Awaitable[None]]
    ) -> Callable[[str], Awaitable[None]]:
        # functools.wraps keeps aiosmtpd's syntax attributes, which HELP and EHLO read.
        @functools.wraps(method)
        async def counted(arg: str) -> None:
            if name != "QUIT":
                if self._refused >= ERROR_LIMIT:
                    return await self._hang_up(TOO_MANY_REFUSALS)
                if name in JUNK_COMMANDS:
                    if self._junk >= JUNK_LIMIT:
                        return await self._hang_up(TOO_MANY_IDLE_COMMANDS)
                    self._junk += 1
            await method(arg)

        return counted

    async def _hang_up(self, status: str) -> None:
        ip = peer_ip(self.session) if self.session else "unknown"
        log.info(
            "closing the MX session of %s: %d refused, %d junk commands",
            ip,
            self._refused,
            self._junk,
        )
        await self.push(status)
        if self.transport is not None:
            self.transport.close()

    async def push(self, status: Any) -> None:
        if isinstance(status, str) and status.startswith("5"):
            self._refused += 1
            # Counted before the client reads the reply, so its next connection sees it.
            if await self._guard.record(self._probe_key) and not self._over_limit_logged:
                self._over_limit_logged = True
                log.info(
                    "MX client %s reached the refusal limit; refused until the window passes",
                    self._probe_key,
                )
        await super().push(status)

    def refused_for_now(self) -> None:
        """A RCPT refused with a 4xx that a prober could ask again and again at no cost
        (PROBING_AT_RCPT, POSTMASTER_UNSET): it counts towards the session's limit, so the
        session still ends, but not towards the client's window (ProbeGuard), which a
        temporary refusal of ours must not lengthen."""
        self._refused += 1


class InboundServer:
    """The MX listener: STARTTLS offered (not required), no AUTH, hosted recipients only."""

    def __init__(self, runtime: Runtime, *, clock: Clock = utcnow) -> None:
        self.runtime = runtime
        self.handler = InboundHandler(runtime, clock=clock)
        smtp = runtime.settings.smtp
        counter = None
        if smtp.inbound_refusal_limit:
            counter = ratelimit.refusal_counter(
                runtime.settings.limits.storage,
                smtp.inbound_refusal_limit,
                smtp.inbound_refusal_window,
                smtp.inbound_refusal_clients,
                "inbound",
                clock=lambda: clock().timestamp(),
            )
        exempt = networks(smtp.inbound_refusal_exempt, "[smtp] inbound_refusal_exempt")
        self.guard = ProbeGuard(counter, exempt)
        self._connections = ratelimit.connection_limiter(
            runtime.settings.limits.storage,
            runtime.settings.smtp.max_connections_per_client,
            "inbound",
        )
        self._servers: list[asyncio.Server] = []
        self._sessions: weakref.WeakSet[SubmissionSMTP] = weakref.WeakSet()
        self.port = 0
        self.ssl_context: ssl.SSLContext | None = None

    async def start(self) -> None:
        settings = self.runtime.settings
        smtp = settings.smtp
        context = server_context(settings.path(smtp.tls_cert), settings.path(smtp.tls_key))
        self.ssl_context = context  # SIGHUP reloads its certificate

        def protocol() -> InboundSMTP:
            session = InboundSMTP(
                self.handler,
                connections=self._connections,
                readers=self.handler.readers,
                guard=self.guard,
                implicit_tls=False,
                budget=self.runtime.inflight,
                hostname=smtp.hostname,
                ident="sealgate ESMTP",
                data_size_limit=smtp.max_message_size,
                enable_SMTPUTF8=True,
                decode_data=False,
                tls_context=context,
                require_starttls=False,
                auth_required=False,
                auth_exclude_mechanism=["LOGIN", "PLAIN"],
                timeout=smtp.idle_timeout,
                min_data_rate=smtp.min_data_rate,
            )
            self._sessions.add(session)
            return session

        loop = asyncio.get_running_loop()
        server = await loop.create_server(protocol, smtp.listen, smtp.inbound_port)
        self._servers = [server]
        self.port = server.sockets[0].getsockname()[1]
        log.info("inbound SMTP listening on %s:%d", smtp.listen, self.port)

    async def stop(self, grace: float = 30.0) -> None:
        await stop_servers(self._servers, self._sessions, lambda: self.handler.inflight, grace)
        self._servers = []
        self.handler.readers.close()
