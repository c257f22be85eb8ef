"""Serve the portal with cheroot (a threaded, pure-Python WSGI server), over TLS.

`sealgate serve` builds one `PortalServer` beside the SMTP servers: `start()`
binds and returns once the socket listens (so port 0 can be read back through
`port`), and `stop()` finishes the running requests and joins the thread.
"""

from __future__ import annotations

import logging
import ssl
import sys
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from cheroot import errors, wsgi
from cheroot.server import HTTPConnection
from cheroot.ssl.builtin import BuiltinSSLAdapter
from flask import Flask

from gateway import logs
from gateway.settings import Settings
from gateway.tls import server_context

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


class _Connection(HTTPConnection):
    """cheroot's connection, finishing the TLS handshake before the first request."""

    handshake_done = False

    def communicate(self) -> bool:
        if not self.handshake_done and isinstance(self.socket, ssl.SSLSocket):
            try:
                self.socket.do_handshake()
            except (OSError, ValueError) as exc:  # dropped, timed out, plain HTTP, bad hello
                _cheroot_error_log(f"client {self.remote_addr} dropped the TLS handshake ({exc})")
                return False
            self.handshake_done = True
        return bool(super().communicate())  # type: ignore[no-untyped-call]


def with_request_id(app: WSGIApplication) -> WSGIApplication:
    """Name each request (`r-…`) in every log line it causes."""

    def call(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
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


class PortalServer:
    def __init__(self, app: Flask, settings: Settings) -> None:
        self._settings = settings
        portal = settings.portal
        self._server: Any = wsgi.Server(
            (portal.host, portal.port),
            with_request_id(app),
            numthreads=portal.threads,
            server_name=SERVER_NAME,
        )
        self._server.max_request_header_size = MAX_REQUEST_HEADER
        self._server.ConnectionClass = _Connection
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
        self._thread = threading.Thread(
            target=self._server.serve, name="sealgate-portal", daemon=True
        )
        self._thread.start()
        log.info("portal listening on %s", self.url)

    def stop(self, timeout: float = 10.0) -> None:
        # cheroot files every server's statistics, which reach the app and through it
        # the runtime, in a process-wide dict: a server that has stopped leaves it.
        getattr(logging, "statistics", {}).pop(f"Cheroot HTTPServer {id(self._server)}", None)
        if self._thread is None:
            return
        self._server.stop()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("the portal server thread did not stop within %.0f s", timeout)
        self._thread = None

    def __enter__(self) -> PortalServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
