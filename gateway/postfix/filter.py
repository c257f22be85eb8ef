"""The content-filter listener: authenticated mail from Postfix, no AUTH of its own.

Trust is by the connecting address only: a connection from outside
`[filter] trusted_sources` is refused at once with 554, and the listener never
offers or accepts AUTH, so there is nothing here to bypass. Postfix has already
authenticated the client (SASL on its submission service) and, with
`reject_sender_login_mismatch`, tied the envelope sender to that login; the
envelope sender is therefore the login this listener submits as. It must be a
hosted address, and the message then goes through exactly the checks of
`gateway.pipeline.submit`.

Postfix announces each message's real client with XFORWARD (ADDR, HELO, ...)
before MAIL; the listener insists on it, which also catches a Postfix whose
filter transport lacks `smtp_send_xforward_command = yes`, and writes the real
client into the Received header and the log instead of Postfix's own address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import weakref
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway import accounts, db, outages
from gateway.addresses import InvalidAddress, normalize_address
from gateway.pipeline import ClientInfo, RejectMessage, Sender, Submission, submit
from gateway.ratelimit import ConnectionCounter
from gateway.readers import ReadPool
from gateway.runtime import Runtime
from gateway.settings import SettingsError
from gateway.smtp_codes import QUEUED, SENDER_EMPTY, TEMPORARY_FAILURE, UNKNOWN_LOCAL_RECIPIENT
from gateway.smtp_server import (
    SubmissionSMTP,
    accept_recipient,
    outage_reply,
    refuse_recipient,
    stop_servers,
    take_content,
)
from gateway.timeutil import Clock, utcnow

log = logging.getLogger(__name__)

XFORWARD_ATTRIBUTES = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE")
UNTRUSTED_SOURCE = "554 5.7.1 This port takes mail only from the configured content-filter client"
XFORWARD_FIRST = "503 5.5.1 Send XFORWARD (smtp_send_xforward_command = yes) before MAIL"
XFORWARD_IN_TRANSACTION = "503 5.5.1 XFORWARD is not allowed inside a mail transaction"
XFORWARD_SYNTAX = "501 5.5.4 Bad XFORWARD attribute"
XFORWARD_OK = "250 2.0.0 Ok"
NO_AUTH = "502 5.5.1 AUTH is not available on the content-filter port"
SENDER_NOT_HOSTED = "553 5.7.1 Sender <{sender}> is not a hosted address; nothing was sent"
_ATTRIBUTE = re.compile(r"([A-Za-z]+)=(\S*)")
MAX_XFORWARD_VALUE = 255


def parse_sources(text: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """`[filter] trusted_sources`: addresses or CIDR networks, separated by commas or spaces."""
    networks = []
    for item in re.split(r"[,\s]+", text.strip()):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise SettingsError(f"[filter] trusted_sources: {item!r} is not an address") from None
    return networks


def xtext_decode(value: str) -> str:
    """RFC 3461 xtext: `+XX` stands for the byte XX."""
    return re.sub(r"\+([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), value)


def client_address(value: str | None) -> str:
    """A forwarded ADDR as a plain address for the Received header, or "unknown"."""
    if not value or value.startswith("["):  # [UNAVAILABLE], [TEMPUNAVAIL]
        return "unknown"
    if value.upper().startswith("IPV6:"):
        value = value[5:]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return "unknown"


class FilterSMTP(SubmissionSMTP):
    """aiosmtpd plus the XFORWARD command, refusing peers outside the trusted sources."""

    def __init__(
        self,
        *args: Any,
        trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network],
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._trusted = trusted
        self.xforward: dict[str, str] = {}

    def _peer_trusted(self) -> bool:
        peer = self.session.peer if self.session else None
        if not isinstance(peer, tuple) or not peer:
            return False
        try:
            ip = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self._trusted)

    async def _handle_client(self) -> None:
        if not self._peer_trusted():
            peer = self.session.peer if self.session else None
            log.warning("content filter: refused a connection from %s", peer)
            await self.push(UNTRUSTED_SOURCE)
            if self.transport is not None:
                self.transport.close()
            return
        await super()._handle_client()

    async def smtp_AUTH(self, arg: str) -> None:  # noqa: N802  (aiosmtpd command name)
        # Nothing to authenticate against here: trust is by source address alone.
        await self.push(NO_AUTH)

    async def smtp_XFORWARD(self, arg: str) -> None:  # noqa: N802  (aiosmtpd command name)
        if self.envelope is not None and self.envelope.mail_from:
            await self.push(XFORWARD_IN_TRANSACTION)
            return
        pairs = _ATTRIBUTE.findall(arg or "")
        if not pairs or len(" ".join(f"{k}={v}" for k, v in pairs)) != len((arg or "").strip()):
            await self.push(XFORWARD_SYNTAX)
            return
        for name, value in pairs:
            name = name.upper()
            if name not in XFORWARD_ATTRIBUTES or len(value) > MAX_XFORWARD_VALUE:
                await self.push(XFORWARD_SYNTAX)
                return
            self.xforward[name] = xtext_decode(value)
        await self.push(XFORWARD_OK)


@dataclass(frozen=True)
class _Owner:
    """Whose mail this transaction is: what MAIL FROM found."""

    account_id: int
    address: str


class FilterHandler:
    def __init__(self, runtime: Runtime, *, clock: Clock = utcnow) -> None:
        self.runtime = runtime
        self.clock = clock
        self.inflight = 0
        # The connection count runs apart from DATA's writes waiting for the lock
        # (gateway.readers), as on the other SMTP servers.
        self.readers = ReadPool("filter-read")

    async def handle_EHLO(  # noqa: N802  (aiosmtpd hook name)
        self,
        server: FilterSMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        server.xforward = {}
        last = responses[-1]
        return [*responses[:-1], "250-XFORWARD " + " ".join(XFORWARD_ATTRIBUTES), last]

    async def handle_MAIL(  # noqa: N802
        self,
        server: FilterSMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if not server.xforward:
            return XFORWARD_FIRST
        if not address or address == "<>":
            return SENDER_EMPTY
        try:
            sender = normalize_address(address)
        except InvalidAddress:
            return SENDER_NOT_HOSTED.format(sender=address[:320])
        owner = await asyncio.to_thread(self._owner_of, sender)
        if owner is None:
            return SENDER_NOT_HOSTED.format(sender=address[:320])
        session.auth_data = owner  # type: ignore[assignment]
        envelope.mail_from = sender
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Sender OK"

    def _owner_of(self, sender: str) -> _Owner | None:
        """The sender's account and her address as stored: the pipeline finds her keys and
        mailboxes under that form, while the envelope goes on as Postfix wrote it."""
        with db.read_only(self.runtime.sessions) as session:
            row = accounts.find_address(session, sender)
            return _Owner(row.account_id, row.address) if row is not None else None

    async def handle_RCPT(  # noqa: N802
        self,
        server: FilterSMTP,
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
        with db.read_only(self.runtime.sessions) as session:
            if not accounts.is_hosted(session, rcpt):
                return True
            return accounts.find_address(session, rcpt) is not None

    async def handle_DATA(  # noqa: N802
        self, server: FilterSMTP, session: Session, envelope: Envelope
    ) -> str:
        owner = session.auth_data
        if not isinstance(owner, _Owner):
            return TEMPORARY_FAILURE
        forwarded = server.xforward
        smtputf8 = "SMTPUTF8" in (opt.upper() for opt in envelope.mail_options)
        submission = Submission(
            sender=Sender(account_id=owner.account_id, address=owner.address),
            envelope_from=str(envelope.mail_from),
            recipients=list(envelope.rcpt_tos),
            raw=take_content(envelope),
            client=ClientInfo(
                helo=forwarded.get("HELO", "") if not forwarded.get("HELO", "[").startswith("[")
                else "",
                ip=client_address(forwarded.get("ADDR")),
                protocol="UTF8SMTPSA" if smtputf8 else "ESMTPSA",
            ),
            received_at=self.clock(),
        )  # fmt: skip
        self.inflight += 1
        try:
            queue_id = await asyncio.to_thread(submit, self.runtime, submission)
        except RejectMessage as reject:
            log.info("content filter: rejected mail from %s: %s", submission.sender.address,
                     reject.status)  # fmt: skip
            return reject.status
        except Exception as error:
            outage = outages.report(error)
            if outage is None:
                raise
            return outage_reply(outage)
        finally:
            self.inflight -= 1
            server.xforward = {}  # Postfix forwards the client again for the next message
        log.info(
            "content filter: %s from %s (client %s, Postfix id %s)",
            queue_id,
            submission.sender.address,
            submission.client.ip,
            forwarded.get("IDENT", "?")[:64],
        )
        return QUEUED.format(queue_id=queue_id)

    async def handle_exception(self, error: Exception) -> str:
        outage = outages.report(error)
        if outage is not None:
            return outage_reply(outage)
        log.error("content filter SMTP session error", exc_info=error)
        return TEMPORARY_FAILURE


class FilterServer:
    """The listener on `[filter] listen`:`port`, plain SMTP (it should be on loopback)."""

    def __init__(self, runtime: Runtime, *, clock: Clock = utcnow) -> None:
        self.runtime = runtime
        self.handler = FilterHandler(runtime, clock=clock)
        self.trusted = parse_sources(runtime.settings.filter.trusted_sources)
        self._servers: list[asyncio.Server] = []
        self._sessions: weakref.WeakSet[SubmissionSMTP] = weakref.WeakSet()
        self.port = 0

    def _protocol(self) -> SMTP:
        smtp = self.runtime.settings.smtp
        session = FilterSMTP(
            self.handler,
            trusted=self.trusted,
            # Postfix opens as many connections as its filter transport allows.
            connections=ConnectionCounter(10_000),
            readers=self.handler.readers,
            implicit_tls=False,
            hostname=smtp.hostname,
            ident="sealgate content filter",
            data_size_limit=smtp.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            require_starttls=False,
            auth_required=False,
            auth_exclude_mechanism=["LOGIN", "PLAIN"],
            timeout=smtp.idle_timeout,
        )
        self._sessions.add(session)
        return session

    async def start(self) -> None:
        settings = self.runtime.settings.filter
        loop = asyncio.get_running_loop()
        server = await loop.create_server(self._protocol, settings.listen, settings.port)
        self._servers = [server]
        self.port = server.sockets[0].getsockname()[1]
        log.info(
            "content filter (Postfix, XFORWARD) listening on %s:%d for %s",
            settings.listen,
            self.port,
            settings.trusted_sources,
        )

    async def stop(self, grace: float = 30.0) -> None:
        await stop_servers(self._servers, self._sessions, lambda: self.handler.inflight, grace)
        self._servers = []
        self.handler.readers.close()
