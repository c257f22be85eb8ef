"""The portal behind cheroot on a real socket: TLS on an ephemeral port, a real
HTTPS login (cookie jar, CSRF token from the form), the inbox, a clean stop, and
the server's own bare answers to requests the app never sees."""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import http.client
import http.cookiejar
import io
import re
import socket
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from gateway import db, mailbox
from gateway.models import Address
from gateway.runtime import Runtime
from webportal import create_app
from webportal.security import security_headers
from webportal.server import MAX_REQUEST_HEADER, PortalServer

from .conftest import csrf_from
from .test_headers_and_errors import assert_security_headers


@pytest.fixture
def portal(runtime: Runtime) -> Iterator[PortalServer]:
    server = PortalServer(create_app(runtime), runtime.settings)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_https_login_and_inbox(
    portal: PortalServer,
    runtime: Runtime,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    with db.transaction(runtime.sessions) as session:
        alice = session.scalar(sa.select(Address).where(Address.address == "alice@example.test"))
        assert alice is not None
        mailbox.store(
            session,
            alice,
            b"From: carol@external.test\r\nSubject: Over the wire\r\n\r\nhi\r\n",
            queue_id="q1",
            envelope_from="carol@external.test",
            now=dt.datetime.now(dt.UTC),
            encrypted=True,
        )

    assert portal.port != 0 and portal.url == f"https://127.0.0.1:{portal.port}"
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=client_ssl_context),
        urllib.request.HTTPCookieProcessor(jar),
    )
    with opener.open(f"{portal.url}/inbox?page=1") as response:
        # Not logged in: redirected to the login form, which remembers where to go.
        assert response.url == f"{portal.url}/login?next=/inbox?page%3D1"
        form_page = response.read().decode()
        assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
        assert response.headers["Server"] == "sealgate"
    [cookie] = list(jar)
    assert cookie.name == "__Host-sealgate" and cookie.secure

    body = urllib.parse.urlencode(
        {
            "email": "alice@example.test",
            "password": "portal-alice-smtp-pw",
            "csrf_token": csrf_from(form_page),
        }
    ).encode()
    with opener.open(f"{portal.url}/login?next=/inbox?page%3D1", data=body) as response:
        assert response.status == 200
        assert response.url == f"{portal.url}/inbox?page=1"
        inbox = response.read().decode()
        assert response.headers["Cache-Control"] == "no-store"
    assert "Signed in as alice@example.test" in inbox
    assert "Over the wire" in inbox and 'class="badge-lock"' in inbox

    with opener.open(f"{portal.url}/static/portal.css") as response:
        assert response.headers["Content-Type"].startswith("text/css")
        assert b"font-family" in response.read()


def test_wrong_password_over_https(
    portal: PortalServer, mail_users: dict[str, str], client_ssl_context: ssl.SSLContext
) -> None:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=client_ssl_context),
        urllib.request.HTTPCookieProcessor(jar),
    )
    with opener.open(f"{portal.url}/login") as response:
        token = csrf_from(response.read().decode())
    body = urllib.parse.urlencode(
        {"email": "alice@example.test", "password": "nope", "csrf_token": token}
    ).encode()
    with opener.open(f"{portal.url}/login", data=body) as response:
        assert response.url == f"{portal.url}/login"
        assert "Email or password is wrong." in response.read().decode()
    with pytest.raises(urllib.error.HTTPError) as caught:
        opener.open(f"{portal.url}/logout", data=b"csrf_token=forged")
    assert caught.value.code == 400
    caught.value.close()


def test_plain_http_to_the_tls_port_gets_no_page(portal: PortalServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", portal.port, timeout=10)
    status: int | None = None
    body = b""
    try:
        conn.request("GET", "/login")
        reply = conn.getresponse()
        status, body = reply.status, reply.read()
    except ConnectionError:
        pass  # cheroot tries a plain 400 but may reset first: either way, no page
    finally:
        conn.close()
    assert status in (None, 400)
    assert b"csrf_token" not in body


def test_plain_http_server_and_clean_stop(runtime: Runtime) -> None:
    settings = runtime.settings.replace(portal={"tls": False, "base_url": "http://127.0.0.1"})
    server = PortalServer(create_app(runtime), settings)
    with server:
        assert server.url.startswith("http://127.0.0.1:")
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/login")
        reply = conn.getresponse()
        assert reply.status == 200 and b"csrf_token" in reply.read()
        conn.close()
        with pytest.raises(RuntimeError, match="already running"):
            server.start()
        port = server.port
    # Stopped: the port is free again and nothing answers.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_a_stopped_server_lets_go_of_the_app(runtime: Runtime) -> None:
    """cheroot files each server's statistics, lambdas that reach the app and the
    runtime, in a process-wide dict; a stopped server used to stay there for good."""
    app = create_app(runtime)
    server = PortalServer(app, runtime.settings)
    server.start()
    server.stop()
    gone = weakref.ref(app)
    del app, server
    gc.collect()
    assert gone() is None


def test_a_client_that_connects_and_says_nothing_holds_up_no_one(
    portal: PortalServer, client_ssl_context: ssl.SSLContext
) -> None:
    """The TLS handshake runs in a worker once the client speaks: silent connections
    (no ClientHello) never stand between another client and its page."""
    silent = [socket.create_connection(("127.0.0.1", portal.port)) for _ in range(3)]
    request = b"GET /login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    try:
        for _ in range(3):
            # Inside the 3 x 10 s (cheroot's socket timeout) the silent ones used to hold.
            with (
                socket.create_connection(("127.0.0.1", portal.port), timeout=8) as raw,
                client_ssl_context.wrap_socket(raw, server_hostname="localhost") as tls,
            ):
                tls.sendall(request)
                assert tls.recv(64).startswith(b"HTTP/1.1 200")
    finally:
        for sock in silent:
            sock.close()


def test_an_oversized_request_header_is_refused(
    portal: PortalServer, client_ssl_context: ssl.SSLContext
) -> None:
    with (
        socket.create_connection(("127.0.0.1", portal.port), timeout=30) as raw,
        client_ssl_context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"GET /login HTTP/1.1\r\nHost: localhost\r\nX-Big: ")
        try:
            for _ in range(64):  # 4 MiB offered; the answer comes after the first 64 KiB
                tls.sendall(b"a" * 65536)
        except OSError:
            pass  # the server answered and closed while we were still sending
        answer = tls.recv(64)
    assert answer.startswith((b"HTTP/1.1 413", b"HTTP/1.1 431", b"HTTP/1.1 400")), answer


def test_clients_that_trickle_their_headers_lose_their_thread(
    runtime: Runtime, client_ssl_context: ssl.SSLContext
) -> None:
    """Slowloris: as many clients as worker threads send a header line now and then and
    never finish. Past the head deadline their connections are cut, and others are
    served again."""
    server = PortalServer(create_app(runtime), runtime.settings, head_seconds=1.0)
    server.start()
    slow: list[ssl.SSLSocket] = []
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(0.3):
            for sock in list(slow):
                try:
                    sock.sendall(b"X-a: b\r\n")
                except OSError:
                    slow.remove(sock)  # cut by the server, as it should be

    feeder = threading.Thread(target=trickle, daemon=True)
    try:
        for _ in range(runtime.settings.portal.threads):
            raw = socket.create_connection(("127.0.0.1", server.port), timeout=30)
            tls = client_ssl_context.wrap_socket(raw, server_hostname="localhost")
            tls.sendall(b"GET /login HTTP/1.1\r\nHost: localhost\r\n")
            slow.append(tls)
        feeder.start()
        request = b"GET /login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        with (
            socket.create_connection(("127.0.0.1", server.port), timeout=20) as raw,
            client_ssl_context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.sendall(request)
            assert tls.recv(64).startswith(b"HTTP/1.1 200")
        stop.set()
        for sock in slow:  # every trickling connection was cut: nothing more comes
            sock.settimeout(10)
            try:
                answer = sock.recv(64)
            except OSError:
                answer = b""
            assert answer == b""
    finally:
        stop.set()
        for sock in slow:
            sock.close()
        server.stop()


def _raw_exchange(sock: socket.socket, request: bytes) -> tuple[bytes, http.client.HTTPMessage]:
    """Send `request` as is; the status line and header fields of what comes back."""
    with contextlib.suppress(OSError):  # the server may answer and close mid-request
        sock.sendall(request)
    answer = b""
    try:
        while b"\r\n\r\n" not in answer and (chunk := sock.recv(65536)):
            answer += chunk
    except OSError:
        pass  # a reset (or a TLS close without notify) after the answer
    status, _, rest = answer.partition(b"\r\n")
    return status, http.client.parse_headers(io.BytesIO(rest))


# Requests cheroot refuses itself, before the app (and its after_request) sees them.
MALFORMED = {
    "no request line": b"GARBAGE\r\n\r\n",
    "bare LF": b"GET /login HTTP/1.1\nHost: localhost\n\n",
    "bad protocol": b"GET /login HTTX/1.1\r\nHost: localhost\r\n\r\n",
    "HTTP/2 as text": b"GET /login HTTP/2.0\r\nHost: localhost\r\n\r\n",
    "bad header line": b"GET /login HTTP/1.1\r\nHost: localhost\r\nno colon\r\n\r\n",
    "bad Content-Length": (b"POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Length: x\r\n\r\n"),
    "unknown coding": (
        b"POST /login HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: zip\r\n\r\n"
    ),
    "fragment in target": b"GET /login#x HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "head too large": b"GET /login HTTP/1.1\r\nHost: localhost\r\nX-Big: "
    + b"a" * MAX_REQUEST_HEADER
    + b"\r\n\r\n",
    "target too long": b"GET /" + b"a" * MAX_REQUEST_HEADER + b" HTTP/1.1\r\n\r\n",
}


@pytest.mark.parametrize("request_bytes", list(MALFORMED.values()), ids=list(MALFORMED))
def test_the_servers_own_error_answers_carry_the_security_headers(
    portal: PortalServer,
    runtime: Runtime,
    client_ssl_context: ssl.SSLContext,
    request_bytes: bytes,
) -> None:
    """A bare 400/413/414/501/505 of cheroot's is a page too: without nosniff and the
    CSP, a browser could render its text (which may quote the request) as HTML, frame it,
    or, without HSTS, be talked into plain http later."""
    with (
        socket.create_connection(("127.0.0.1", portal.port), timeout=30) as raw,
        client_ssl_context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        status, headers = _raw_exchange(tls, request_bytes)
    assert re.match(rb"HTTP/1\.1 (400|413|414|501|505) ", status), status
    assert_security_headers(headers)
    for name, value in security_headers(runtime.settings.portal).items():
        assert headers[name] == value, name


def test_a_plain_http_portal_s_own_error_answers_have_no_hsts(runtime: Runtime) -> None:
    settings = runtime.settings.replace(portal={"tls": False, "base_url": "http://127.0.0.1"})
    with (
        PortalServer(create_app(runtime), settings) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock,
    ):
        status, headers = _raw_exchange(sock, MALFORMED["HTTP/2 as text"])
    assert status.startswith(b"HTTP/1.1 505 "), status
    assert_security_headers(headers, tls=False)
