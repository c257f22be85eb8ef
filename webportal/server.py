"""Serve the portal with cheroot (a threaded, pure-Python WSGI server), over TLS.

`sealgate serve` builds one `PortalServer` beside the SMTP servers: `start()`
binds and returns once the socket listens (so port 0 can be read back through
`port`), and `stop()` finishes the running requests and joins the thread.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from cheroot import errors, wsgi
from cheroot.server import HTTPConnection, HTTPRequest
from cheroot.ssl.builtin import BuiltinSSLAdapter
from flask import Flask

from gateway import logs
from gateway.settings import Settings
from gateway.tls import server_context
from webportal.security import security_headers

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

SERVER_NAME = "sealgate"
# A request's line and header fields together: browsers send a few KiB (cookies
# included); beyond this cheroot answers 413 before the rest is read.
MAX_REQUEST_HEADER = 64 * 1024


class _HandshakeInWorker(BuiltinSSLAdapter):
    """TLS whose handshake runs in the worker thread that first reads the connection.

    cheroot's own adapter shakes hands in the one thread that accepts connections:
    a client that connected and sent nothing held every new connection back for the
    socket timeout (10 s), and a trickle of them kept the portal from answering at
    all. A connection now reaches a worker only once its first bytes have arrived.
    """

    def wrap(self, sock: Any) -> tuple[ssl.SSLSocket, dict[str, str]]:
        try:
            tls = self.context.wrap_socket(sock, do_handshake_on_connect=False, server_side=True)
        except OSError as exc:
            raise errors.FatalSSLAlert(*exc.args) from exc
        return tls, {"wsgi.url_scheme": "https", "HTTPS": "on"}


class _Request(HTTPRequest):
    """cheroot's request, whose own bare answers carry the portal's security headers.

    cheroot answers some requests itself, before the app and its `after_request` see
    them: a malformed request line or header field (400), a head or target too large
    (413, 414), an unknown transfer coding (501), another HTTP major version (505), a
    read timeout or a failing app (408, 500). Those are pages a browser shows too.
    This is cheroot's `simple_response` with the server's `bare_headers` added.
    """

    def simple_response(self, status: Any, msg: str | bytes = "") -> None:
        status = str(status)
        body = msg.encode("ISO-8859-1") if isinstance(msg, str) else msg
        fields = [
            ("Content-Length", str(len(body))),
            ("Content-Type", "text/plain"),
            *getattr(self.server, "bare_headers", ()),
        ]
        if status[:3] in {"413", "414"}:
            # cheroot stops reading the request: the connection cannot carry another.
            self.close_connection = True
            if self.response_protocol == "HTTP/1.1":
                fields.append(("Connection", "close"))
        head = f"{self.server.protocol} {status}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in fields)
        try:
            self.conn.wfile.write(head.encode("ISO-8859-1") + b"\r\n" + body)
        except OSError as exc:
            if exc.args[0] not in errors.socket_errors_to_ignore:
                raise


class _Connection(HTTPConnection):
    """cheroot's connection, finishing the TLS handshake before the first request, and
    reading each request's head within the server's deadline (`HeadDeadlines`)."""

    RequestHandlerClass = _Request
    handshake_done = False

    def communicate(self) -> bool:
        heads: HeadDeadlines | None = getattr(self.server, "head_deadlines", None)
        if heads is not None:
            heads.start(self.socket)
        try:
            if not self.handshake_done and isinstance(self.socket, ssl.SSLSocket):
                try:
                    self.socket.do_handshake()
                except (OSError, ValueError) as exc:  # dropped, timed out, plain HTTP
                    _cheroot_error_log(
                        f"client {self.remote_addr} dropped the TLS handshake ({exc})"
                    )
                    return False
                self.handshake_done = True
            return bool(super().communicate())  # type: ignore[no-untyped-call]
        except OSError:
            if heads is not None and heads.finish():
                _cheroot_error_log(
                    f"client {self.remote_addr} sent no complete request within"
                    f" {heads.seconds:.0f} s; connection closed"
                )
                return False
            raise
        finally:
            if heads is not None:
                heads.finish()


# How long a client may take to send a request's line and header fields once it has
# started: browsers send them at once; a client that trickles them (slowloris) would
# otherwise hold one of the few worker threads for as long as it likes.
REQUEST_HEAD_SECONDS = 30.0


class HeadDeadlines:
    """The connections whose request head a worker is reading, and when it must be in.

    A watcher thread shuts down the socket of one that is late; the worker's read then
    ends and the thread is free. The head is in once the app is called (`finish`)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._open: dict[int, tuple[float, socket.socket]] = {}
        self._cut: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, sock: socket.socket) -> None:
        with self._lock:
            self._open[threading.get_ident()] = (time.monotonic() + self.seconds, sock)
            self._cut.discard(threading.get_ident())

    def finish(self) -> bool:
        """Stop watching this thread's connection; whether it had been cut for lateness."""
        key = threading.get_ident()
        with self._lock:
            self._open.pop(key, None)
            if key in self._cut:
                self._cut.discard(key)
                return True
        return False

    def run(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="portal-heads", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        tick = min(1.0, self.seconds / 4)
        while not self._stop.wait(tick):
            now = time.monotonic()
            with self._lock:
                late = [key for key, (due, _s) in self._open.items() if due <= now]
                socks = [self._open.pop(key)[1] for key in late]
                self._cut.update(late)
            for sock in socks:
                # The plain socket's shutdown: the TLS layer stays to the reading thread.
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)


def with_request_id(app: WSGIApplication, heads: HeadDeadlines | None = None) -> WSGIApplication:
    """Name each request (`r-…`) in every log line it causes; its head is in."""

    def call(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if heads is not None:
            heads.finish()
        with logs.event_id(logs.new_id("r")):
            return app(environ, start_response)

    return call


def _cheroot_error_log(msg: str = "", level: int = logging.INFO, traceback: bool = False) -> None:
    """cheroot writes its errors (a client that drops TLS, a bad request line) to stderr,
    tracebacks included; here they go to our log at cheroot's level, and a traceback
    only for what is not a client hanging up (the formatter keeps it on one line)."""
    exc = sys.exc_info()[1] if traceback else None
    drop = isinstance(exc, ssl.SSLError | ConnectionError)
    logging.getLogger("sealgate.portal.http").log(
        level, "%s", str(msg).strip() or "error", exc_info=exc is not None and not drop
    )


class _Server(wsgi.Server):
    """cheroot's WSGI server, holding the deadlines its connections read heads within
    and the header fields its own bare answers carry."""

    head_deadlines: HeadDeadlines | None = None
    bare_headers: tuple[tuple[str, str], ...] = ()


class PortalServer:
    def __init__(
        self, app: Flask, settings: Settings, *, head_seconds: float = REQUEST_HEAD_SECONDS
    ) -> None:
        self._settings = settings
        portal = settings.portal
        self._heads = HeadDeadlines(head_seconds)
        self._server: Any = _Server(
            (portal.host, portal.port),
            with_request_id(app, self._heads),
            numthreads=portal.threads,
            server_name=SERVER_NAME,
        )
        self._server.max_request_header_size = MAX_REQUEST_HEADER
        self._server.ConnectionClass = _Connection
        self._server.head_deadlines = self._heads
        self._server.bare_headers = tuple(security_headers(portal).items())
        # cheroot advertises itself in "Server:"; say only what the app is called.
        self._server.version = SERVER_NAME
        self._server.error_log = _cheroot_error_log  # type: ignore[method-assign]
        # The context new HTTPS handshakes use (None without TLS): SIGHUP reloads it.
        self.ssl_context: ssl.SSLContext | None = None
        if portal.tls:
            cert = settings.path(settings.smtp.tls_cert)
            key = settings.path(settings.smtp.tls_key)
            adapter = _HandshakeInWorker(str(cert), str(key))
            # The gateway's own context: TLS 1.2 at least, as on the SMTP ports.
            adapter.context = server_context(cert, key)
            self._server.ssl_adapter = adapter
            self.ssl_context = adapter.context
        self._thread: threading.Thread | None = None

    @property
    def tls(self) -> bool:
        return self._settings.portal.tls

    @property
    def host(self) -> str:
        host: str = self._server.bind_addr[0]
        return host

    @property
    def port(self) -> int:
        """The bound port (the real one when the setting was 0), valid after `start()`."""
        port: int = self._server.bind_addr[1]
        return port

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    def start(self) -> None:
        """Bind and listen (errors such as a port in use raise here), then serve in a thread."""
        if self._thread is not None:
            raise RuntimeError("the portal server is already running")
        self._server.prepare()
        self._heads.run()
        self._thread = threading.Thread(
            target=self._server.serve, name="sealgate-portal", daemon=True
        )
        self._thread.start()
        log.info("portal listening on %s", self.url)

    def stop(self, timeout: float = 10.0) -> None:
        # cheroot files every server's statistics, which reach the app and through it
        # the runtime, in a process-wide dict: a server that has stopped leaves it.
        getattr(logging, "statistics", {}).pop(f"Cheroot HTTPServer {id(self._server)}", None)
        self._heads.stop()
        if self._thread is None:
            return
        self._server.stop()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("the portal server thread did not stop within %.0f s", timeout)
        self._thread = None
        # A connection cheroot accepted while stopping (its own wake-up connection among
        # them) may outlive the stop in a worker thread and keep the server: the server
        # lets go of the app, so the app and the runtime it reaches can still go.
        self._server.wsgi_app = None

    def __enter__(self) -> PortalServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
