"""A recording fake smarthost: a real aiosmtpd server on 127.0.0.1 with a throwaway CA.

Loaded for the whole suite through `pytest_plugins` in tests/conftest.py. Use it
wherever mail leaves the gateway (the relay, SMTP submission to external
recipients, encrypted outbound delivery):

    def test_something(runtime, smarthost):
        rt = dataclasses.replace(runtime, settings=relay_settings_for(runtime.settings, smarthost))
        ...                                   # make the gateway send something
        [msg] = smarthost.wait_for(1)         # blocks until one message arrived (or fails)
        assert msg.mail_from == "alice@example.test"
        assert msg.rcpt_tos == ("carol@elsewhere.test",)
        assert msg.content == raw_bytes       # exactly what came out of DATA
        assert msg.tls                        # it went over STARTTLS

Failures, delays and holds are injected per SMTP stage ("mail", "rcpt", "data", "quit"):

    smarthost.fail("rcpt", 451)               # every RCPT answers 451 4.3.0 until cleared
    smarthost.fail("data", 550, times=1)      # only the next DATA answers 550 5.7.1
    smarthost.fail("rcpt", "553 5.1.3 bad address")   # any reply text
    smarthost.clear_failures()
    smarthost.delay("data", 2.0)              # DATA answers after 2 s (slow peer)
    smarthost.hold("data")                    # DATA replies wait until release_hold() …
    smarthost.wait_held()                     # … and this blocks until a client is waiting
    smarthost.stop(); smarthost.start()       # down (connection refused), then up on the SAME port

Variants come from `smarthost_factory(starttls=False)` (no STARTTLS offered),
`smarthost_factory(trusted=False)` (certificate from a CA the gateway does not
trust), `smarthost_factory(implicit_tls=True)` (TLS from the first byte) and
`smarthost_factory(credentials=("relay-user", "relay-pw"))` (AUTH required, only
after TLS) and `smarthost_factory(withhold=("8BITMIME", "SMTPUTF8"))` (EHLO does not
offer those extensions: an old or minimal MTA). Every instance is stopped when the test ends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from gateway.settings import Settings

Stage = Literal["mail", "rcpt", "data", "quit"]
STAGES: tuple[Stage, ...] = ("mail", "rcpt", "data", "quit")

DEFAULT_REPLIES = {
    421: "421 4.3.0 Service shutting down (injected)",
    450: "450 4.2.1 Mailbox busy (injected)",
    451: "451 4.3.0 Temporary failure (injected)",
    452: "452 4.3.1 Insufficient storage (injected)",
    550: "550 5.1.1 Mailbox unavailable (injected)",
    552: "552 5.3.4 Message too big (injected)",
    553: "553 5.1.3 Bad address (injected)",
    554: "554 5.7.1 Rejected (injected)",
}


@dataclass(frozen=True)
class RecordedMessage:
    """One accepted transaction, as the smarthost saw it on the wire."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes = dataclasses.field(repr=False)
    mail_options: tuple[str, ...]
    tls: bool
    auth_login: str | None


@dataclass
class _Failure:
    reply: str
    remaining: int | None


class FakeSmarthost:
    """An SMTP server in its own event-loop thread that records what it accepts.

    Attributes: `host`, `port` (fixed after the first `start()`, reused by later
    ones), `messages` (list of `RecordedMessage`, in arrival order), `ca_file`
    (PEM of the CA the gateway should trust to reach it), `connections` (count of
    accepted TCP connections, handy to show nothing was even attempted).
    """

    def __init__(
        self,
        *,
        ca_file: Path,
        server_context: ssl.SSLContext | None,
        starttls: bool = True,
        implicit_tls: bool = False,
        credentials: tuple[str, str] | None = None,
        host: str = "127.0.0.1",
        withhold: tuple[str, ...] = (),
    ) -> None:
        if implicit_tls and server_context is None:
            raise ValueError("implicit TLS needs a server certificate")
        self.host = host
        self.port = 0
        self.ca_file = ca_file
        self.implicit_tls = implicit_tls
        self.starttls = starttls and not implicit_tls
        self.credentials = credentials
        self.withhold = frozenset(name.upper() for name in withhold)
        self.messages: list[RecordedMessage] = []
        self.connections = 0
        self.auth_failures = 0
        self._context = server_context
        self._failures: dict[Stage, _Failure] = {}
        self._delays: dict[Stage, float] = {}
        self._hold_stage: Stage | None = None
        self._hold_open: asyncio.Event | None = None
        self._held = threading.Event()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fake-smarthost", daemon=True
        )
        self._thread.start()
        self._server: asyncio.Server | None = None
        # Weak: a finished connection's protocol (and its TLS buffers) must be freed, or a
        # long run (thousands of relayed messages) grows by a quarter MiB per connection.
        self._protocols: weakref.WeakSet[SMTP] = weakref.WeakSet()
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        """Listen (again). The first start picks a free port; later ones reuse it."""
        if self._server is None:
            self._call(self._listen())

    def stop(self) -> None:
        """Stop listening and drop every open connection: clients see a dead relay."""
        if self._server is not None:
            self._call(self._shutdown())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.stop()
        self._call(self._cancel_leftover_tasks())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _listen(self) -> None:
        self._server = await self._loop.create_server(
            self._make_protocol,
            host=self.host,
            port=self.port,
            ssl=self._context if self.implicit_tls else None,
            reuse_address=True,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        server, self._server = self._server, None
        assert server is not None
        server.close()
        for proto in list(self._protocols):
            if proto.transport is not None:
                proto.transport.close()
            if proto._original_transport is not None:
                proto._original_transport.close()
        self._protocols.clear()
        await server.wait_closed()
        await asyncio.sleep(0)

    async def _cancel_leftover_tasks(self) -> None:
        me = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not me]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _make_protocol(self) -> SMTP:
        with self._lock:
            self.connections += 1
        proto = SMTP(
            _Handler(self),
            hostname="smarthost.test",
            tls_context=self._context if self.starttls else None,
            enable_SMTPUTF8=True,
            # aiosmtpd does not count implicit TLS as TLS (its issue #281), and it
            # warns when AUTH is required without TLS; handle_MAIL insists instead.
            auth_require_tls=not self.implicit_tls,
            auth_required=False,
            authenticator=self._authenticate if self.credentials else None,
            timeout=30,
            loop=self._loop,
        )
        self._protocols.add(proto)
        return proto

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert self.credentials is not None
        ok = (
            isinstance(data, LoginPassword)
            and data.login == self.credentials[0].encode()
            and data.password == self.credentials[1].encode()
        )
        if not ok:
            with self._lock:
                self.auth_failures += 1
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    # -- failure injection -------------------------------------------------------

    def fail(self, stage: Stage, reply: int | str, *, times: int | None = None) -> None:
        """Answer `reply` at `stage` (`times` times, or until `clear_failures()`)."""
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}")
        text = DEFAULT_REPLIES.get(reply, f"{reply} injected") if isinstance(reply, int) else reply
        with self._lock:
            self._failures[stage] = _Failure(text, times)

    def delay(self, stage: Stage, seconds: float) -> None:
        """Hold the reply at `stage` for `seconds` (0 removes the delay)."""
        with self._lock:
            self._delays[stage] = seconds

    def hold(self, stage: Stage) -> None:
        """Keep clients waiting at `stage` until `release_hold()`: a peer stuck mid-transaction."""
        self._held.clear()
        self._hold_open = self._call(self._new_event())
        self._hold_stage = stage

    def wait_held(self, timeout: float = 10.0) -> None:
        """Block until a client is being held; AssertionError after `timeout` s."""
        if not self._held.wait(timeout):
            raise AssertionError("no client reached the held stage")

    def release_hold(self) -> None:
        event, self._hold_stage, self._hold_open = self._hold_open, None, None
        if event is not None:
            self._loop.call_soon_threadsafe(event.set)

    async def _new_event(self) -> asyncio.Event:
        return asyncio.Event()

    def clear_failures(self) -> None:
        """Forget injected failures and delays (a hold stays until `release_hold()`)."""
        with self._lock:
            self._failures.clear()
            self._delays.clear()

    def _injected(self, stage: Stage) -> str | None:
        with self._lock:
            failure = self._failures.get(stage)
            if failure is None:
                return None
            if failure.remaining is not None:
                failure.remaining -= 1
                if failure.remaining <= 0:
                    del self._failures[stage]
            return failure.reply

    async def _wait(self, stage: Stage) -> None:
        with self._lock:
            seconds = self._delays.get(stage, 0.0)
        if seconds:
            await asyncio.sleep(seconds)
        event = self._hold_open
        if self._hold_stage == stage and event is not None:
            self._held.set()
            await event.wait()

    # -- reading what arrived ----------------------------------------------------

    def _record(self, message: RecordedMessage) -> None:
        with self._arrived:
            self.messages.append(message)
            self._arrived.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[RecordedMessage]:
        """Block until at least `count` messages arrived; AssertionError after `timeout` s.

        From async code, call it through `asyncio.to_thread`.
        """
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.messages) >= count, timeout):
                raise AssertionError(
                    f"smarthost got {len(self.messages)} message(s), expected {count}"
                )
            return list(self.messages)


class _Handler:
    """aiosmtpd hooks: each returns the SMTP reply, injected failures first."""

    def __init__(self, owner: FakeSmarthost) -> None:
        self.owner = owner

    async def handle_EHLO(  # noqa: N802  (aiosmtpd's hook names)
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        withheld = self.owner.withhold
        return [r for r in responses if r[4:].split(" ")[0].upper() not in withheld]

    async def handle_MAIL(  # noqa: N802  (aiosmtpd's hook names)
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        await self.owner._wait("mail")
        if self.owner.credentials is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        if (reply := self.owner._injected("mail")) is not None:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(  # noqa: N802  (aiosmtpd's hook names)
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        await self.owner._wait("rcpt")
        if (reply := self.owner._injected("rcpt")) is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_QUIT(  # noqa: N802  (aiosmtpd's hook names)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        await self.owner._wait("quit")
        reply = self.owner._injected("quit")
        return reply if reply is not None else "221 2.0.0 Bye"

    async def handle_DATA(  # noqa: N802  (aiosmtpd's hook names)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        await self.owner._wait("data")
        if (reply := self.owner._injected("data")) is not None:
            return reply
        login = None
        if isinstance(session.auth_data, LoginPassword):
            login = session.auth_data.login.decode()
        assert envelope.mail_from is not None
        assert envelope.original_content is not None
        self.owner._record(
            RecordedMessage(
                mail_from=envelope.mail_from,
                rcpt_tos=tuple(envelope.rcpt_tos),
                content=bytes(envelope.original_content),
                mail_options=tuple(envelope.mail_options),
                tls=session.ssl is not None or self.owner.implicit_tls,
                auth_login=login,
            )
        )
        return f"250 2.0.0 OK queued as fake{len(self.owner.messages)}"


def relay_settings_for(settings: Settings, smarthost: FakeSmarthost, **relay: Any) -> Settings:
    """`settings` with [relay] pointed at `smarthost` (trusting its CA); `relay` overrides keys.

    Security follows the smarthost (`tls` for implicit TLS, else `starttls`, so a
    smarthost without STARTTLS shows the relay's insistence); timeouts are short
    so a dead peer fails a test quickly.
    """
    values: dict[str, Any] = {
        "host": smarthost.host,
        "port": smarthost.port,
        "security": "tls" if smarthost.implicit_tls else "starttls",
        "ca_file": str(smarthost.ca_file),
        "timeout": 5.0,
        "poll_interval": 0.05,
    }
    if smarthost.credentials:
        values["username"], values["password"] = smarthost.credentials
    values.update(relay)
    return settings.replace(relay=values)


SmarthostFactory = Callable[..., FakeSmarthost]


@pytest.fixture
def smarthost_factory(
    tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SmarthostFactory]:
    """Make running smarthosts: `factory(starttls=True, trusted=True, implicit_tls=False,
    credentials=None)`."""
    created: list[FakeSmarthost] = []
    folder = tmp_path_factory.mktemp("smarthost")
    ca_file = folder / "smarthost-ca.pem"
    tls_ca.cert_pem.write_to_path(str(ca_file))

    def make(
        *,
        starttls: bool = True,
        trusted: bool = True,
        implicit_tls: bool = False,
        credentials: tuple[str, str] | None = None,
        withhold: tuple[str, ...] = (),
    ) -> FakeSmarthost:
        issuer = tls_ca if trusted else trustme.CA()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        issuer.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        host = FakeSmarthost(
            ca_file=ca_file,
            server_context=context if (starttls or implicit_tls) else None,
            starttls=starttls,
            implicit_tls=implicit_tls,
            credentials=credentials,
            withhold=withhold,
        )
        created.append(host)
        host.start()
        return host

    yield make
    for host in created:
        host.close()


@pytest.fixture
def smarthost(smarthost_factory: SmarthostFactory) -> FakeSmarthost:
    """A running smarthost with STARTTLS (certificate from `tls_ca`), no AUTH."""
    return smarthost_factory()
