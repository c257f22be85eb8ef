"""Inbound SMTP (the MX side): mail from anywhere for the hosted addresses, no AUTH.

It relays nothing: a RCPT outside the hosted domains is refused with 550 5.7.1,
an unknown hosted address with 550 5.1.1. Accepted mail gets the same checks as
submitted mail (odd line ends in the header section made plain, see
gateway.mail.header_line_ends; MIME structure; X-Sealgate-* headers removed), one Received
header, and is stored in each recipient's INBOX, where the autoresponder sees it,
in one transaction before the `250`. A message that carries more than
MAX_RECEIVED `Received:` fields is in a mail loop (RFC 5321 §6.3) and is refused
before anything is stored or answered. A hosted domain with an internationalized
name takes mail in both forms of it, the A-label (`xn--…`, all a sender without
SMTPUTF8 may write) and the U-label, whichever of them an admin added. An
`Autocrypt:` header from an external
sender updates that sender's peer state in the same transaction (gateway.autocrypt).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import weakref

import sqlalchemy.orm as so
from aiosmtpd.smtp import Envelope, Session

from gateway import (
    accounts,
    autoresponder,
    db,
    lookups,
    mailbox,
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
from gateway.pipeline.received import trace_header
from gateway.pipeline.structure import check_structure
from gateway.pipeline.triggers import strip_control_headers
from gateway.runtime import Runtime
from gateway.smtp_codes import (
    QUEUED,
    RELAY_DENIED,
    TEMPORARY_FAILURE,
    UNKNOWN_LOCAL_RECIPIENT,
)
from gateway.smtp_server import (
    SubmissionSMTP,
    accept_recipient,
    hosted_refusal,
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
    with db.transaction(runtime.sessions) as session:
        delivered: set[int] = set()
        for rcpt in dict.fromkeys(r.lower() for r in recipients):
            address = _deliverable(session, rcpt)
            if address is None:
                raise RejectMessage(UNKNOWN_LOCAL_RECIPIENT.format(rcpt=rcpt))
            if address.id in delivered:  # an alias and its address: one copy
                continue
            delivered.add(address.id)
            maillog.record_inbound(
                session, queue_id, raw, envelope_from=envelope_from, recipient=rcpt, now=now
            )
            mailbox.store(
                session, address, raw, queue_id=queue_id, envelope_from=envelope_from, now=now
            )
            autoresponder.respond(
                session, address, raw, envelope_from=envelope_from, now=now, queue_id=queue_id
            )
        if learnt is not None:
            autocrypt_inbound.record(session, learnt, now)
    log.info(
        "received %s for %d hosted recipient(s), %d bytes", queue_id, len(recipients), len(raw)
    )
    return queue_id


def _reverse_path(mail_from: str | None) -> str:
    """aiosmtpd keeps a null sender as "<>"; store it as the empty return path it is."""
    value = (mail_from or "").strip()
    return "" if value in ("", "<>") else value


class InboundHandler:
    def __init__(self, runtime: Runtime, *, clock: Clock = utcnow) -> None:
        self.runtime = runtime
        self.clock = clock
        self.inflight = 0

    async def handle_RCPT(  # noqa: N802  (aiosmtpd hook name)
        self,
        server: SubmissionSMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if postmaster.names_postmaster(address):
            address = await asyncio.to_thread(postmaster.resolve, self.runtime.sessions, address)
        refusal = refuse_recipient(envelope, address, self.runtime.settings.smtp.max_recipients)
        if refusal is None:
            found = await lookups.destination_at_rcpt(self.runtime.sessions, address)
            if not found.hosted and (other := other_form(address)) is not None:
                found = await lookups.destination_at_rcpt(self.runtime.sessions, other)
            refusal = RELAY_DENIED if not found.hosted else hosted_refusal(found, address)
        return refusal or accept_recipient(envelope, address, rcpt_options)

    async def handle_DATA(  # noqa: N802
        self, server: SubmissionSMTP, session: Session, envelope: Envelope
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
        finally:
            self.inflight -= 1
        return QUEUED.format(queue_id=queue_id)

    async def handle_exception(self, error: Exception) -> str:
        log.error("inbound SMTP session error", exc_info=error)
        return TEMPORARY_FAILURE


class InboundServer:
    """The MX listener: STARTTLS offered (not required), no AUTH, hosted recipients only."""

    def __init__(self, runtime: Runtime, *, clock: Clock = utcnow) -> None:
        self.runtime = runtime
        self.handler = InboundHandler(runtime, clock=clock)
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

        def protocol() -> SubmissionSMTP:
            session = SubmissionSMTP(
                self.handler,
                connections=self._connections,
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
