"""A real HTTPS server that answers like mail domains' Web Key Directories.

DNS is outside the test machine, so the gateway's WKD client gets a resolver
(`server.resolver`) that maps the served host names to this server on
127.0.0.1; the client still sends the real name in SNI and `Host`, and checks
the certificate (issued by the test CA for every served name) against it. A
name not served does not exist, as in DNS, which is how the advanced method's
`openpgpkey.<domain>` falls back to the direct method.

    server = WkdServer(tls_ca, ["openpgpkey.partner.example", "partner.example"])
    server.publish("carol@partner.example", key_bytes)             # advanced method
    server.publish("dan@direct.example", key_bytes, method="direct")
    server.respond("openpgpkey.partner.example", path, status=302,
                   headers={"Location": "http://partner.example/key"})
    server.hang(host, path)           # accept, then never answer (until close)
    server.requests                   # [(host, path), ...] in arrival order
    server.served                     # Event set whenever an answer went out
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import trustme

from gateway.wkd_client import HostNotFound
from keystore.wkd import address_hash

WELL_KNOWN = "/.well-known/openpgpkey"


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False
    content_length: bool = True  # False: the body ends when the connection closes


def wkd_path(address: str, method: Literal["advanced", "direct"]) -> tuple[str, str]:
    """(host, path) where a directory publishes `address`'s key."""
    domain = address.rpartition("@")[2].lower()
    name = address_hash(address)
    if method == "advanced":
        return f"openpgpkey.{domain}", f"{WELL_KNOWN}/{domain}/hu/{name}"
    return domain, f"{WELL_KNOWN}/hu/{name}"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        owner = self.server.owner
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].lower()
        path = urllib.parse.urlsplit(self.path).path
        with owner.lock:
            owner.requests.append((host, path))
            answer = owner.answers.get((host, path), Answer(status=404, body=b"not found"))
        if answer.hang:
            owner.release.wait(60)
            return
        self.send_response(answer.status)
        headers = {"Content-Type": "application/octet-stream", **answer.headers}
        if answer.content_length:
            headers.setdefault("Content-Length", str(len(answer.body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(answer.body)
        owner.served.set()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: WkdServer

    def finish_request(self, request: Any, client_address: Any) -> None:
        # TLS per connection in the request's own thread, so a stuck client stalls no one.
        try:
            tls = self.owner.context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            with contextlib.suppress(OSError):
                tls.close()


class WkdServer:
    def __init__(self, ca: trustme.CA, names: list[str]) -> None:
        self.names = [n.lower() for n in names]
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(*self.names).configure_cert(self.context)
        self.answers: dict[tuple[str, str], Answer] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.served = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def resolver(self, host: str, port: int) -> list[tuple[str, int]]:
        if host.lower() not in self.names:
            raise HostNotFound(f"{host} does not exist")
        return [("127.0.0.1", self.port)]

    def publish(
        self, address: str, data: bytes, *, method: Literal["advanced", "direct"] = "advanced"
    ) -> None:
        self.respond(*wkd_path(address, method), body=data)

    def respond(
        self,
        host: str,
        path: str,
        *,
        status: int = 200,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        content_length: bool = True,
    ) -> None:
        with self.lock:
            self.answers[(host.lower(), path)] = Answer(
                status, body, headers or {}, content_length=content_length
            )

    def hang(self, host: str, path: str) -> None:
        with self.lock:
            self.answers[(host.lower(), path)] = Answer(hang=True)

    def requests_for(self, address: str) -> list[tuple[str, str]]:
        name = address_hash(address)
        with self.lock:
            return [r for r in self.requests if r[1].endswith(f"/hu/{name}")]

    def close(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


def free_port() -> int:
    """A port nothing listens on (for "connection refused")."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
