"""The outbound relay: hands queued mail to the configured smarthost, byte for byte.

Byte for byte, but for two things: a message that is not valid data for the
smarthost is converted (gateway.transport.sevenbit): 8-bit data to one without
8BITMIME; a NUL, a line over 998 octets, or a bare CR in the header section (which
DATA would make a line end the gateway's checks did not see) to any; and DKIM
signatures are added last, over what goes on the wire.

One sweep claims a batch of due rows (gateway.queue), sends each on its own
connection with aiosmtplib, and records the outcome: delivered rows go, a
temporary failure (4xx, no connection, timeout, no STARTTLS, bad certificate)
is retried with back-off, a 5xx to MAIL/RCPT/DATA or the maximum age bounces
to the sender. A 5xx anywhere else (EHLO, STARTTLS, AUTH) means our own relay
configuration is wrong, so the mail waits instead of bouncing. A sealed row the
master key ring cannot open is retried the same way without a connection (the
admin may put the ring back), and bounced at the maximum age without its content.

Mail still ages when it cannot leave at all. With no smarthost configured, rows
wait (as the README promises) and each bounces at the maximum age, saying why.
When the ring file stops loading while serve runs (it refuses to start without
one), the relay says so at error level once an hour, naming the file and the fix,
and goes on: sealed rows wait as above, and mail that would be DKIM-signed waits
for the ring rather than leaving unsigned (the ring is likely back soon, unlike a
key whose version was destroyed, gateway.dkim.sign); everything else is sent.

With `security = starttls` the relay never sends in clear: a server that does
not offer STARTTLS, or whose certificate does not verify, gets nothing. Logs
name queue ids and recipients only; never a body or the relay password.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import enum
import logging
import random
import re
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import aiosmtplib
import aiosmtplib.email
import sqlalchemy.exc
import sqlalchemy.orm as so

from gateway import db, dsn, local_delivery, outages, rawheaders
from gateway import queue as outbound
from gateway.admin import maillog
from gateway.dkim import sign as dkim_sign
from gateway.queue import ClaimedItem
from gateway.runtime import Runtime
from gateway.settings import LEASE_SHARE, RelaySettings, SettingsError
from gateway.timeutil import Clock, describe_seconds, utcnow
from gateway.transport import sevenbit
from gateway.transport.data import DataTimeouts, send_data
from keystore.masterkey import MasterKeyError, MasterKeyRing

log = logging.getLogger(__name__)

T = TypeVar("T")

# Every line end as SMTP DATA carries it (aiosmtplib rewrites a bare CR or LF to CRLF
# and ends the data with one): DKIM must sign these bytes, not the stored ones.
_LINE_ENDS = re.compile(rb"\r\n|\n|\r(?!\n)")

# What aiosmtplib refuses to put into a command line (it raises ValueError mid-transaction).
_COMMAND_CONTROLS = re.compile(r"[\x00-\x1f\x7f]")

# aiosmtplib's text for a reply past its limits; it has no type or attribute of its own
# (code -1, as for any malformed reply). tests/gateway/test_aiosmtplib_contract.py
# checks it against the installed aiosmtplib, pinned below 6 in pyproject.toml.
_TOO_LONG = "response too long"

# After `stop` is set, in-flight sends get this long to finish before they are
# cut off and their rows released; a stop must not wait out a hung smarthost.
STOP_GRACE_SECONDS = 10.0


class Outcome(enum.Enum):
    SENT = "sent"
    DEFERRED = "deferred"
    BOUNCED = "bounced"
    RELEASED = "released"
    LEASE_LOST = "lease lost"


@dataclass(frozen=True)
class Result:
    item_id: int
    queue_id: str
    outcome: Outcome


class _Temporary(Exception):
    """Try again later; the text becomes the row's last_error (never holds secrets)."""


class _Permanent(Exception):
    def __init__(self, failure: dsn.Failure) -> None:
        super().__init__(failure.diagnostic)
        self.failure = failure


def client_tls_context(relay: RelaySettings) -> ssl.SSLContext:
    """Verifying context: the system store, or only the CA file when one is configured."""
    try:
        ctx = ssl.create_default_context(cafile=relay.ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(
            f"[relay] ca_file: cannot load {relay.ca_file}: {exc.strerror or exc}"
        ) from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class Relay:
    """One relay worker's state: settings, TLS context, clock and back-off jitter."""

    def __init__(
        self, runtime: Runtime, *, clock: Clock = utcnow, rng: random.Random | None = None
    ) -> None:
        self.settings = runtime.settings
        self.relay = runtime.settings.relay
        self.sessions = runtime.sessions
        self.ring = runtime.ring
        self.inflight = runtime.inflight
        self.clock = clock
        self.rng = rng
        self.tls_context = client_tls_context(self.relay) if self.relay.security != "none" else None
        self._warned_no_host = False
        self._announced = False
        self.dkim_errors = dkim_sign.ErrorThrottle()
        # Why the ring did not load at this sweep ("" when it did), and when that was said.
        self._no_ring = ""
        self._ring_errors = dkim_sign.ErrorThrottle()

    @property
    def configured(self) -> bool:
        return bool(self.relay.host)

    async def _db(self, fn: Callable[[so.Session], T]) -> T:
        def work() -> T:
            with db.transaction(self.sessions) as session:
                return fn(session)

        return await asyncio.to_thread(work)

    # -- the loop ----------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep until `stop` is set, waiting `poll_interval` when nothing is due."""
        try:
            moved = await self._db(lambda s: local_delivery.take_home(s, self.clock()))
        except sqlalchemy.exc.SQLAlchemyError as exc:
            if outages.report(exc) is None:
                log.error("relay: could not check the queue for local mail: %s", type(exc).__name__)
            moved = 0
        if moved:
            log.info("relay: %d queued message(s) for hosted addresses stored locally", moved)
        if not self._announced:
            self.announce()
        while not stop.is_set():
            try:
                results = await self.sweep(stop)
            except Exception as exc:
                if outages.report(exc) is not None:
                    pass  # said once by the outage watch; the next sweep tries again
                elif isinstance(exc, sqlalchemy.exc.SQLAlchemyError):
                    # Only the type: driver messages can quote statement parameters (bodies).
                    log.error("relay: database error, retrying shortly: %s", type(exc).__name__)
                else:
                    log.exception("relay: sweep failed, retrying shortly")
                results = []
            if len(results) >= self.relay.batch_size and not stop.is_set():
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.relay.poll_interval)
        log.info("relay: stopped")

    def announce(self) -> None:
        """Say where outbound mail goes, or that it stays queued. `serve` calls it while
        it starts, before "ready"; `run` does only if nobody did, so it is said once,
        and not after a stop that came early."""
        self._announced = True
        if not self.configured:
            self._warn_no_host()
            return
        log.info(
            "relay: sending through %s:%d (%s)",
            self.relay.host,
            self.relay.port,
            self.relay.security,
        )

    def _warn_no_host(self) -> None:
        if not self._warned_no_host:
            self._warned_no_host = True
            # A warning, not an error: hosted mail works without a smarthost (the
            # README's first run has none), only mail to other domains waits.
            log.warning(
                "relay: %s: mail to other domains cannot leave; it stays queued and bounces"
                " to its sender %s after it was queued ([relay] max_age). Set [relay] host"
                " (and port, security) in sealgate.toml, or SEALGATE_RELAY_HOST, and restart",
                NO_HOST,
                describe_seconds(self.relay.max_age),
            )

    def _ring_or_none(self, now: dt.datetime) -> MasterKeyRing | None:
        """The ring, or None (said at error level once an hour) when it does not load."""
        try:
            ring = self.ring.get()
        except MasterKeyError as exc:
            self._no_ring = str(exc)
            if self._ring_errors.due("ring", now):
                log.error(
                    "relay: the master key ring cannot be loaded: %s. Until it loads again,"
                    " sealed notifications and mail to be DKIM-signed wait (and bounce to"
                    " their senders at [relay] max_age); other mail is sent. Said again in"
                    " an hour if still so",
                    exc,
                )
            return None
        if self._no_ring:
            self._no_ring = ""
            self._ring_errors = dkim_sign.ErrorThrottle()
            log.info("relay: the master key ring loads again")
        return ring

    async def sweep(self, stop: asyncio.Event | None = None) -> list[Result]:
        """Claim one batch of due rows and deliver them concurrently; the outcomes.

        With no smarthost, only rows past the maximum age are claimed, to bounce.
        """
        now = self.clock()
        if not self.configured:
            self._warn_no_host()
        ring = self._ring_or_none(now)
        cutoff = None if self.configured else now - dt.timedelta(seconds=self.relay.max_age)
        items = await self._db(
            lambda s: outbound.claim(
                s,
                now=now,
                lease_seconds=self.relay.lease_seconds,
                limit=self.relay.batch_size,
                ring=ring,
                budget=self.inflight,
                created_before=cutoff,
            )
        )
        if not items:
            return []
        tasks = [asyncio.create_task(self._deliver_and_release(item)) for item in items]
        try:
            if stop is not None:
                await self._wait_or_stop(tasks, stop)
            results = await asyncio.gather(*tasks, return_exceptions=True)
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        for item, outcome in zip(items, results, strict=True):
            if (
                isinstance(outcome, BaseException)
                and not isinstance(outcome, asyncio.CancelledError)
                and outages.report(outcome) is None
            ):
                # Most likely the database went away while recording the outcome;
                # the lease runs out and the row is tried again.
                log.error(
                    "relay: queue %s to %s: outcome not recorded (%s)",
                    item.queue_id,
                    item.rcpt_to,
                    type(outcome).__name__,
                )
        return [r for r in results if isinstance(r, Result)]

    async def _wait_or_stop(self, tasks: list[asyncio.Task[Result]], stop: asyncio.Event) -> None:
        """Wait for the batch; once `stop` is set, give it a grace period, then cut it off."""
        pending: set[asyncio.Future[Any]] = set(tasks)
        stopping = asyncio.create_task(stop.wait())
        try:
            while pending and not stop.is_set():
                _done, pending = await asyncio.wait(
                    {*pending, stopping}, return_when=asyncio.FIRST_COMPLETED
                )
                pending.discard(stopping)
        finally:
            stopping.cancel()
        if pending:
            _done, pending = await asyncio.wait(pending, timeout=STOP_GRACE_SECONDS)
            if pending:
                log.info("relay: stopping; releasing %d unfinished row(s)", len(pending))
            for task in pending:
                task.cancel()

    # -- one row -----------------------------------------------------------------

    async def _deliver_and_release(self, item: ClaimedItem) -> Result:
        try:
            return await self._deliver(item)
        finally:
            if item.hold is not None:
                item.hold.release()

    async def _deliver(self, item: ClaimedItem) -> Result:
        if not self.configured:  # claimed only once past the maximum age
            return await self._bounce(item, dsn.expired_failure(NO_HOST))
        if item.unopenable:
            hint = _NO_RING_HINT if self._no_ring else _RING_HINT
            return await self._defer(item, item.unopenable, hint=hint)
        if self._no_ring:
            signed: bool = await self._db(lambda s: _signed_by_us(s, item.raw))
            if signed:  # the sender's report says why, not where the keys are kept
                return await self._defer(item, WAITING_FOR_RING, hint=_NO_RING_HINT, sent=False)
        attempt = item.attempts + 1
        log.info(
            "relay: queue %s to %s: attempt %d via %s:%d",
            item.queue_id,
            item.rcpt_to,
            attempt,
            self.relay.host,
            self.relay.port,
        )
        try:
            # Stay well inside the lease, so no other worker can pick the row up
            # while this one may still be talking to the smarthost.
            async with asyncio.timeout(self.relay.lease_seconds * LEASE_SHARE):
                reply, client = await self._send(item)
        except asyncio.CancelledError:
            await asyncio.shield(self._finish_released(item))
            raise
        except _Permanent as exc:
            return await self._bounce(item, exc.failure)
        except _Temporary as exc:
            return await self._defer(item, str(exc))
        except TimeoutError:
            return await self._defer(item, "timed out talking to the relay")
        except Exception as exc:  # a bug or an odd peer must not stop the worker
            if outages.classify(exc) is not None:
                raise  # the database or disk is away: the lease runs out, tried again
            log.exception("relay: queue %s to %s: unexpected error", item.queue_id, item.rcpt_to)
            return await self._defer(item, f"internal error ({type(exc).__name__})")
        # Accepted: from here on a stop must not release the row (that would send it
        # twice), so recording the delivery is shielded from cancellation.
        await asyncio.shield(self._record_sent(item, reply, client))
        return Result(item.id, item.queue_id, Outcome.SENT)

    async def _dkim_signed(self, item: ClaimedItem) -> ClaimedItem:
        """The row with DKIM signatures prepended: signed last, over the bytes that leave."""
        ring = self._ring_or_none(self.clock())
        if ring is None:  # it stopped loading since this sweep began
            signed: bool = await self._db(lambda s: _signed_by_us(s, item.raw))
            if not signed:
                return item
            raise _Temporary(WAITING_FOR_RING)

        def work() -> ClaimedItem:
            with db.read_only(self.sessions) as session:
                signing = dkim_sign.signing_keys(
                    session, ring, item.raw, now=self.clock(), errors=self.dkim_errors
                )
            if not signing:
                return item
            wire = wire_form(item.raw)
            return dataclasses.replace(item, raw=dkim_sign.sign(wire, signing))

        return await asyncio.to_thread(work)

    async def _record_sent(self, item: ClaimedItem, reply: str, client: aiosmtplib.SMTP) -> None:
        try:
            now = self.clock()

            def sent(s: so.Session) -> None:
                outbound.mark_sent(s, item)
                maillog.record_relay(s, item.queue_id, item.rcpt_to, maillog.SENT, reply, now)

            await self._db(sent)
            log.info(
                "relay: queue %s to %s: sent (%s)",
                item.queue_id,
                item.rcpt_to,
                dsn.clean(reply, 200),
            )
        finally:
            await close_client(client, say_quit=True)

    async def _finish_released(self, item: ClaimedItem) -> None:
        now = self.clock()
        await self._db(lambda s: outbound.release(s, item, now=now))
        log.info("relay: queue %s to %s: released unsent", item.queue_id, item.rcpt_to)

    async def _defer(
        self, item: ClaimedItem, error: str, *, hint: str = "", sent: bool = True
    ) -> Result:
        """Retry later with back-off, or bounce once the row is `max_age` old.

        `hint` (for the admin) goes to the log line only, not to last_error or the bounce.
        `sent` False: this try never reached the smarthost (the bounce names no server).
        """
        now = self.clock()
        age = (now - item.created_at).total_seconds()
        if age >= self.relay.max_age:
            # A row whose bytes never opened was never offered to the smarthost.
            remote = "" if item.unopenable or not sent else self.relay.host
            failure = dsn.expired_failure(error, remote_mta=remote)
            log.warning(
                "relay: queue %s to %s: giving up after %d attempts over %.0f s: %s",
                item.queue_id,
                item.rcpt_to,
                item.attempts + 1,
                age,
                error,
            )
            return await self._bounce(item, failure)

        def deferred(s: so.Session) -> dt.datetime | None:
            maillog.record_relay(s, item.queue_id, item.rcpt_to, maillog.DEFERRED, error, now)
            return outbound.defer(s, item, error=error, now=now, relay=self.relay, rng=self.rng)

        next_at = await self._db(deferred)
        if next_at is None:
            return self._lease_lost(item)
        log.warning(
            "relay: queue %s to %s: deferred until %s: %s%s",
            item.queue_id,
            item.rcpt_to,
            next_at.isoformat(timespec="seconds"),
            error,
            hint.format(expires=_expiry(item, self.relay)),
        )
        return Result(item.id, item.queue_id, Outcome.DEFERRED)

    async def _bounce(self, item: ClaimedItem, failure: dsn.Failure) -> Result:
        now = self.clock()

        def bounced(s: so.Session) -> str | None:
            maillog.record_relay(
                s, item.queue_id, item.rcpt_to, maillog.BOUNCED, failure.diagnostic, now
            )
            return outbound.give_up(
                s, item, failure, now=now, reporting_mta=self.settings.smtp.hostname
            )

        where = await self._db(bounced)
        if where is None:
            return self._lease_lost(item)
        log.warning(
            "relay: queue %s to %s: failed (%s %s); bounce %s",
            item.queue_id,
            item.rcpt_to,
            failure.status,
            dsn.clean(failure.diagnostic, 200),
            _bounce_fate(where, item.mail_from),
        )
        return Result(item.id, item.queue_id, Outcome.BOUNCED)

    def _lease_lost(self, item: ClaimedItem) -> Result:
        log.warning(
            "relay: queue %s to %s: lease ran out before the outcome was recorded",
            item.queue_id,
            item.rcpt_to,
        )
        return Result(item.id, item.queue_id, Outcome.LEASE_LOST)

    # -- SMTP --------------------------------------------------------------------

    async def _send(self, item: ClaimedItem) -> tuple[str, aiosmtplib.SMTP]:
        """Deliver the row: the reply after the final dot ("250 ...") and the still-open client.

        Raises _Temporary or _Permanent; the caller QUITs once the delivery is recorded.
        """
        relay = self.relay
        where = f"{relay.host}:{relay.port}"
        sock = await _connected_socket(relay, where)
        client = aiosmtplib.SMTP(
            hostname=relay.host,
            sock=sock,
            use_tls=relay.security == "tls",
            start_tls=False,
            tls_context=self.tls_context,
            validate_certs=relay.security != "none",
            timeout=relay.timeout,
            local_hostname=self.settings.smtp.hostname,
        )
        try:
            await self._connect(client, where)
            reply = await self._transaction(client, item)
        except BaseException:
            await close_client(client)
            raise
        return reply, client

    async def _connect(self, client: aiosmtplib.SMTP, where: str) -> None:
        """The greeting (on the socket `_connected_socket` opened), EHLO, STARTTLS, AUTH."""
        relay = self.relay
        try:
            await client.connect(timeout=relay.greeting_timeout)
            await client.ehlo()
            if relay.security == "starttls":
                if not client.supports_extension("starttls"):
                    raise _Temporary(
                        f"relay {where} does not offer STARTTLS; not sending in clear "
                        "([relay] security = starttls)"
                    )
                await client.starttls()
                await client.ehlo()  # extensions offered before TLS do not count
            if relay.username:
                if relay.security == "none":
                    raise _Temporary(
                        "refusing to send the relay password over an unencrypted connection "
                        "([relay] security = none)"
                    )
                await client.login(relay.username, relay.password)
        except _Temporary:
            raise
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise _Temporary(
                f"relay {where} refused our credentials: {exc.code} {dsn.clean(exc.message)}"
            ) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise _Temporary(_reply_text(exc.code, exc.message, where)) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            if (bad_cert := _cert_error(exc)) is not None:
                raise _Temporary(
                    f"tls: certificate of relay {where} not trusted: {bad_cert.verify_message}"
                ) from None
            raise _Temporary(f"connection to relay {where} failed: {_describe(exc)}") from None

    async def _transaction(self, client: aiosmtplib.SMTP, item: ClaimedItem) -> str:
        refused = unsendable_address(item.mail_from, item.rcpt_to)
        if refused is not None:
            raise _Permanent(refused)
        options: list[str] = []
        utf8_envelope = not (item.mail_from.isascii() and item.rcpt_to.isascii())
        if utf8_envelope or _utf8_headers(item.raw):
            # RFC 6531 3.4 / RFC 6532 3: a UTF-8 address or header field travels only
            # with SMTPUTF8; without it the message is returned (X.6.7 / X.6.9).
            if not client.supports_extension("smtputf8"):
                raise _Permanent(
                    dsn.Failure(
                        "5.6.7" if utf8_envelope else "5.6.9",
                        "X-Sealgate",
                        "the relay does not support SMTPUTF8, needed for this "
                        + ("address" if utf8_envelope else "message's UTF-8 header fields"),
                        self.relay.host,
                        peer_address(client),
                    )
                )
            options.append("SMTPUTF8")
        eightbit = client.supports_extension("8bitmime")
        try:
            # Off the event loop: both read the whole message, which may be tens of MiB.
            raw = await asyncio.to_thread(_valid_for_relay, item.raw, eightbit)
        except sevenbit.Unconvertible as exc:
            raise _Permanent(
                dsn.Failure(
                    exc.status, "X-Sealgate", exc.reason, self.relay.host, peer_address(client)
                )
            ) from None
        item = dataclasses.replace(item, raw=raw)
        if eightbit and not item.raw.isascii():
            options.append("BODY=8BITMIME")
        item = await self._dkim_signed(item)  # over what goes on the wire
        encoding = "utf-8" if "SMTPUTF8" in options else "ascii"
        try:
            relay = self.relay
            async with _any_positive_reply():
                await client.mail(
                    item.mail_from, options=options, encoding=encoding, timeout=relay.mail_timeout
                )
            async with _any_positive_reply():
                await client.rcpt(item.rcpt_to, encoding=encoding, timeout=relay.rcpt_timeout)
            response = await send_data(client, wire_form(item.raw), data_timeouts(relay))
        except aiosmtplib.SMTPResponseException as exc:
            self._classify(exc.code, exc.message, peer_address(client))
        except aiosmtplib.SMTPTimeoutError as exc:
            raise _Temporary(f"timed out talking to the relay: {_describe(exc)}") from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise _Temporary(f"connection to relay lost: {_describe(exc)}") from None
        return f"{response.code} {response.message}"

    def _classify(self, code: int, message: str, peer: str) -> NoReturn:
        if code < 200:
            raise _Temporary(_reply_text(code, message, f"{self.relay.host}:{self.relay.port}"))
        if code == 530:  # RFC 4954: authentication required; our configuration, not the mail
            raise _Temporary(
                f"relay requires AUTH ([relay] username/password): {code} {dsn.clean(message)}"
            )
        if 500 <= code < 600:
            raise _Permanent(
                dsn.smtp_failure(code, message, remote_mta=self.relay.host, remote_address=peer)
            )
        raise _Temporary(f"{code} {dsn.clean(message)}")


@contextlib.asynccontextmanager
async def _any_positive_reply() -> AsyncIterator[None]:
    """Take any 2xx as the success it is (RFC 5321 4.2.1).

    aiosmtplib wants 250 for MAIL and 250 or 251 for RCPT; a 252 or a 251 to MAIL
    was retried as a temporary failure until `max_age` and then bounced.
    """
    try:
        yield
    except aiosmtplib.SMTPResponseException as exc:
        if not 200 <= exc.code < 300:
            raise


def _valid_for_relay(raw: bytes, eightbit: bool) -> bytes:
    """`raw` as it may go to a relay with (or without) 8BITMIME.

    8-bit data to a relay without 8BITMIME (RFC 6152 3), and a NUL or a line over 998
    octets to any (not 8bit data either, RFC 6152 2), is converted (as Postfix does)
    rather than returned; raises sevenbit.Unconvertible for what cannot be converted
    faithfully, and the mail is returned.
    """
    return (
        raw if sevenbit.fits(raw, eightbit=eightbit) else sevenbit.convert(raw, eightbit=eightbit)
    )


def _reply_text(code: int, message: str, where: str) -> str:
    """A reply for last_error, or what was wrong with one that was no reply.

    aiosmtplib stops reading a reply past 32 KiB (or a line past 8 KiB) and one
    that does not start with a code, and reports it as code -1. Like Postfix we
    take that for a protocol error, a temporary failure: the attempt ends there,
    the row is retried as after a 4xx, and bounced after `max_age`.
    """
    if code >= 200:
        return f"{code} {dsn.clean(message)}"
    if _TOO_LONG in message.lower():
        return (
            f"protocol error: relay {where} sent a reply longer than 32 KiB (or a line over 8 KiB)"
        )
    return f"protocol error: relay {where} sent no valid SMTP reply: {dsn.clean(message, 200)}"


# What the admin can do about a row whose sealed bytes do not open (see gateway.queue).
_RING_HINT = (
    "; it opens again once master.keys holds that version again (a copy of the ring"
    " from before), else it bounces to its sender, without its content, at {expires}"
)
_NO_RING_HINT = (
    "; it goes once the master key ring loads again, else it bounces to its sender at {expires}"
)
NO_HOST = "no smarthost configured ([relay] host is empty)"
WAITING_FOR_RING = "waiting for the master key ring to sign it (DKIM)"


def _signed_by_us(session: so.Session, raw: bytes) -> bool:
    """Whether the relay would DKIM-sign `raw` (its From is under a hosted domain)."""
    domain = dkim_sign.from_domain(raw)
    return domain is not None and dkim_sign.signing_domain(session, domain) is not None


def _expiry(item: ClaimedItem, relay: RelaySettings) -> str:
    """When the row reaches `max_age` and bounces (at the first try after it)."""
    expires = item.created_at + dt.timedelta(seconds=relay.max_age)
    return expires.isoformat(timespec="seconds")


def _bounce_fate(where: str, mail_from: str) -> str:
    if where == "mailbox":
        return "stored for the sender"
    return "dropped (null sender)" if not mail_from else "dropped (sender not hosted)"


async def close_client(
    client: aiosmtplib.SMTP, *, say_quit: bool = False, wait: float = 2.0
) -> None:
    """Say QUIT (if asked), close the connection, and wait until the socket is gone.

    A TLS connection finishes its shutdown after `close()` returns (and aiosmtplib
    forgets its protocol on QUIT, so that is caught first). A sweep that returned
    earlier would leave the socket to whoever ends the event loop; a peer that does
    not finish the shutdown within `wait` seconds, or a cancellation meanwhile,
    gets the connection aborted.
    """
    protocol, transport = client.protocol, client.transport
    try:
        if say_quit:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await client.quit()
    finally:
        client.close()
        if protocol is not None:
            await _closed(protocol, transport, wait)


async def _closed(protocol: object, transport: object, wait: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    try:
        while not getattr(protocol, "_connection_lost", True):
            if loop.time() > deadline:
                break
            await asyncio.sleep(0.01)
        else:
            return
    except asyncio.CancelledError:
        _abort(transport)
        raise
    _abort(transport)
    for _ in range(3):  # abort() closes the socket a loop turn or two later
        await asyncio.sleep(0)


def _abort(transport: object) -> None:
    if isinstance(transport, asyncio.WriteTransport):
        transport.abort()


def peer_address(client: aiosmtplib.SMTP) -> str:
    """The IP address the client is connected to ("" when it is not)."""
    transport = client.transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    return str(peer[0]) if isinstance(peer, tuple) and peer else ""


def _utf8_headers(raw: bytes) -> bool:
    """Whether the header section holds UTF-8 (not ASCII, yet valid UTF-8)."""
    head = rawheaders.header_block(raw)
    if head.isascii():
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


async def _connected_socket(relay: RelaySettings, where: str) -> socket.socket:
    """A TCP connection to the relay within `connect_timeout`.

    aiosmtplib waits for the connection and the greeting under one timeout; RFC 5321
    gives the greeting 5 minutes, and a host that never answers a SYN would hold the
    delivery that long. So the connection is made here, and aiosmtplib gets the socket.
    """
    try:
        sock = await asyncio.to_thread(
            socket.create_connection, (relay.host, relay.port), relay.connect_timeout
        )
    except TimeoutError:
        raise _Temporary(
            f"connection to relay {where} failed: no answer within {relay.connect_timeout:g} s"
        ) from None
    except OSError as exc:
        raise _Temporary(f"connection to relay {where} failed: {_describe(exc)}") from None
    sock.settimeout(None)  # asyncio takes it over, non-blocking
    return sock


def data_timeouts(relay: RelaySettings) -> DataTimeouts:
    """RFC 5321 4.5.3.2's DATA timeouts from [relay] (the lease bounds the whole)."""
    return DataTimeouts(
        init=relay.data_init_timeout, block=relay.data_block_timeout, done=relay.data_done_timeout
    )


def unsendable_address(mail_from: str, rcpt_to: str) -> dsn.Failure | None:
    """Why the envelope cannot be written as SMTP commands at all, or None.

    Inbound SMTP takes envelope senders (a quoted local part holding a control
    character) that an automatic reply then addresses; no retry can send those.
    """
    for address, status, role in ((mail_from, "5.1.7", "sender"), (rcpt_to, "5.1.3", "recipient")):
        if role == "sender" and not address:
            continue  # the null reverse-path
        try:
            quoted = aiosmtplib.email.quote_address(address)
        except ValueError:
            quoted = "\x00"
        if _COMMAND_CONTROLS.search(quoted):
            return dsn.Failure(
                status,
                "X-Sealgate",
                f"the {role} address cannot be written in an SMTP command (RFC 5321 4.1.2)",
            )
    return None


def wire_form(raw: bytes) -> bytes:
    """`raw` as DATA sends it: every line end CRLF, a final CRLF (the dot-stuffing aside).

    Pass-through mail keeps its bytes in the queue, a bare CR among them; the client
    library rewrites line ends on the way out, so a signature over the stored bytes
    would not verify at the receiver.
    """
    wire = _LINE_ENDS.sub(b"\r\n", raw)
    return wire if wire.endswith(b"\r\n") else wire + b"\r\n"


def _cert_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _describe(exc: BaseException) -> str:
    text = dsn.clean(str(exc), 300)
    return re.sub(r"^\[Errno -?\d+\] ", "", text) or type(exc).__name__


async def run_relay(
    runtime: Runtime,
    stop: asyncio.Event,
    clock: Clock = utcnow,
    *,
    rng: random.Random | None = None,
) -> None:
    """The relay worker for `sealgate serve`: runs until `stop` is set.

    Raises SettingsError at once if [relay] ca_file cannot be loaded. Back-off
    jitter comes from `rng` (a fresh generator if None; tests pass a seeded one).
    """
    if rng is None:
        rng = random.Random()  # noqa: S311  (jitter, not secrecy)
    await Relay(runtime, clock=clock, rng=rng).run(stop)
