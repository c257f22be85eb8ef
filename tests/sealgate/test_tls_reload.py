"""SIGHUP makes a running `sealgate serve` pick up a renewed TLS certificate, dropping nothing.

The certificate files are replaced under a real server process; after SIGHUP a new
connection (SMTP with implicit TLS, SMTP STARTTLS, the portal over HTTPS) is
served the new certificate, while connections opened before keep working on the
old one. A broken pair of files is refused and the old certificate stays.
"""

from __future__ import annotations

import http.client
import signal
import smtplib
import socket
import ssl
import time

import pytest
import trustme
from cryptography import x509

from gateway.runtime import Runtime
from gateway.settings import load_settings

from .test_serve import ServeProcess, running


@pytest.fixture
def serve_env(test_env: dict[str, str], runtime: Runtime) -> dict[str, str]:
    """The environment for a `sealgate serve` on this test's (initialised) data dir."""
    return test_env


def _serial(der: bytes | None) -> int:
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def _implicit_tls_serial(port: int, ctx: ssl.SSLContext) -> int:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return _serial(tls.getpeercert(binary_form=True))


def _starttls_serial(port: int, ctx: ssl.SSLContext) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.starttls(context=ctx)
        assert isinstance(client.sock, ssl.SSLSocket)
        return _serial(client.sock.getpeercert(binary_form=True))


def _portal(server: ServeProcess, ctx: ssl.SSLContext) -> http.client.HTTPSConnection:
    host, port = server.portal_url.removeprefix("https://").rsplit(":", 1)
    return http.client.HTTPSConnection(host, int(port), context=ctx, timeout=10)


def _portal_get(conn: http.client.HTTPSConnection) -> int:
    conn.request("GET", "/login")
    response = conn.getresponse()
    response.read()
    return response.status


def _wait_for_line(server: ServeProcess, text: str) -> str:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        for line in list(server.output):
            if text in line:
                return line
        time.sleep(0.05)
    raise AssertionError(f"no {text!r} in the log:\n" + "".join(server.output))


def test_sighup_reloads_the_certificate_without_dropping_connections(
    serve_env: dict[str, str], tls_ca: trustme.CA, client_ssl_context: ssl.SSLContext
) -> None:
    settings = load_settings(env=serve_env)
    cert_path = settings.path(settings.smtp.tls_cert)
    key_path = settings.path(settings.smtp.tls_key)
    with running(serve_env) as server:
        old = _implicit_tls_serial(server.tls_port, client_ssl_context)
        assert _starttls_serial(server.submission_port, client_ssl_context) == old

        # Connections that stay open across the reload.
        smtp_open = smtplib.SMTP_SSL(
            "127.0.0.1", server.tls_port, context=client_ssl_context, timeout=10
        )
        assert smtp_open.ehlo()[0] == 250
        portal_open = _portal(server, client_ssl_context)
        assert _portal_get(portal_open) == 200
        assert portal_open.sock is not None
        assert _serial(portal_open.sock.getpeercert(binary_form=True)) == old

        renewed = tls_ca.issue_cert("localhost", "127.0.0.1")
        renewed.cert_chain_pems[0].write_to_path(str(cert_path))
        renewed.private_key_pem.write_to_path(str(key_path))
        new = x509.load_pem_x509_certificate(renewed.cert_chain_pems[0].bytes()).serial_number
        assert new != old
        server.proc.send_signal(signal.SIGHUP)
        _wait_for_line(server, "TLS certificate reloaded")

        assert _implicit_tls_serial(server.tls_port, client_ssl_context) == new
        assert _starttls_serial(server.submission_port, client_ssl_context) == new
        portal_new = _portal(server, client_ssl_context)
        assert _portal_get(portal_new) == 200
        assert portal_new.sock is not None
        assert _serial(portal_new.sock.getpeercert(binary_form=True)) == new
        portal_new.close()

        # The connections opened before the reload still work, on the old certificate.
        assert smtp_open.noop()[0] == 250
        assert isinstance(smtp_open.sock, ssl.SSLSocket)
        assert _serial(smtp_open.sock.getpeercert(binary_form=True)) == old
        smtp_open.quit()
        assert _portal_get(portal_open) == 200
        portal_open.close()

        # A broken pair (a key that is not the certificate's) is refused; nothing changes.
        other = tls_ca.issue_cert("localhost")
        other.private_key_pem.write_to_path(str(key_path))
        server.proc.send_signal(signal.SIGHUP)
        refused = _wait_for_line(server, "TLS certificate not reloaded")
        assert " ERROR " in refused and "Traceback" not in refused
        assert _implicit_tls_serial(server.tls_port, client_ssl_context) == new

        server.proc.send_signal(signal.SIGTERM)
        assert server.wait_and_close() == 0
