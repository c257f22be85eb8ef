"""Web Key Directory client: fetch an external recipient's key from its mail domain.

The draft (draft-koch-openpgp-webkey-service) names two URLs for `local@domain`:

- advanced: https://openpgpkey.<domain>/.well-known/openpgpkey/<domain>/hu/<hash>?l=<local>
- direct:   https://<domain>/.well-known/openpgpkey/hu/<hash>?l=<local>

The advanced method is tried first; the direct one only when `openpgpkey.<domain>`
does not exist, as the draft says. Everything here treats the answer as hostile:
HTTPS only, certificates verified, redirects followed only to https (and at most
`MAX_REDIRECTS`), the body read up to a byte limit, no content encoding accepted,
and one wall-clock deadline for the whole lookup that closes the socket when it
passes (a server trickling one byte at a time cannot hold the caller longer).
The bytes returned are still untrusted: `keystore.untrusted` vets them.

Host names are resolved by an injectable `Resolver`. The default one refuses
addresses that are not globally routable, so a recipient domain pointing at
127.0.0.1 or a private network cannot make the gateway probe internal services;
tests inject a resolver that maps the test domains to a local HTTPS server.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from gateway import idn
from gateway.settings import KeysSettings
from keystore.wkd import local_part_hash

MAX_REDIRECTS = 3
MAX_LOCAL_PART = 64
CHUNK = 16 * 1024
USER_AGENT = "sealgate-wkd/1"

Method = Literal["advanced", "direct"]


class WkdError(Exception):
    """The lookup failed (network, TLS, HTTP); the message is safe to show and log."""


class WkdNotFound(WkdError):
    """The directory answered that it has no key for the address."""


class HostNotFound(WkdError):
    """The host name does not exist (so the advanced method falls back to direct)."""


Resolver = Callable[[str, int], list[tuple[str, int]]]


def system_resolver(host: str, port: int) -> list[tuple[str, int]]:
    """Addresses of `host` from the system resolver, globally routable ones only."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise HostNotFound(f"{host} does not exist") from None
    addresses = []
    for _family, _type, _proto, _name, sockaddr in infos:
        ip = str(sockaddr[0])
        if ipaddress.ip_address(ip.split("%", 1)[0]).is_global:
            addresses.append((ip, int(sockaddr[1])))
    if not addresses:
        raise WkdError(f"{host} resolves only to non-public addresses")
    return addresses


def default_ssl_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


@dataclass(frozen=True)
class Transport:
    """How WKD reaches the network: name resolution and the TLS trust store."""

    resolver: Resolver = system_resolver
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)


@dataclass(frozen=True)
class WkdAnswer:
    """A key directory's answer: the body (untrusted bytes) and where it came from."""

    method: Method
    url: str
    body: bytes = field(repr=False)


def wkd_urls(address: str) -> tuple[str, str]:
    """The advanced and the direct URL for `address`."""
    local, at, domain = address.rpartition("@")
    if not (at and local and domain) or len(local) > MAX_LOCAL_PART:
        raise WkdError(f"{address!r} is not an address WKD can look up")
    try:
        ascii_domain = idn.a_label(domain)
    except idn.InvalidDomainName:
        raise WkdError(f"{domain!r} is not a valid domain") from None
    if not ascii_domain or any(c in ascii_domain for c in "/?#@:[]\\ "):
        raise WkdError(f"{domain!r} is not a valid domain")
    name = local_part_hash(local)
    query = urllib.parse.urlencode({"l": local})
    advanced = (
        f"https://openpgpkey.{ascii_domain}/.well-known/openpgpkey/{ascii_domain}/hu/{name}?{query}"
    )
    direct = f"https://{ascii_domain}/.well-known/openpgpkey/hu/{name}?{query}"
    return advanced, direct


class _Connection(http.client.HTTPSConnection):
    """HTTPS to addresses the resolver chose, with SNI and Host kept as the URL's host."""

    def __init__(
        self,
        host: str,
        port: int,
        addresses: list[tuple[str, int]],
        context: ssl.SSLContext,
        timeout: float,
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._addresses = addresses
        self._tls = context

    def connect(self) -> None:
        failure: OSError | None = None
        for address in self._addresses:
            try:
                raw = socket.create_connection(address, timeout=self.timeout)
            except OSError as exc:
                failure = exc
                continue
            self.sock = raw  # so the deadline can cut a stalled handshake too
            try:
                self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)
            except BaseException:
                raw.close()
                raise
            return
        raise failure or OSError("no address to connect to")


class WkdClient:
    """Looks keys up by WKD within one deadline per lookup; safe to share between threads."""

    def __init__(
        self,
        *,
        timeout: float,
        max_bytes: int,
        resolver: Resolver = system_resolver,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.resolver = resolver
        self.ssl_context = ssl_context or default_ssl_context()

    @classmethod
    def from_settings(cls, keys: KeysSettings, transport: Transport | None = None) -> WkdClient:
        transport = transport or Transport()
        return cls(
            timeout=keys.wkd_timeout,
            max_bytes=keys.max_key_bytes,
            resolver=transport.resolver,
            ssl_context=transport.ssl_context,
        )

    def fetch(self, address: str) -> WkdAnswer:
        """The directory's answer for `address`; `WkdNotFound` or `WkdError` otherwise."""
        advanced, direct = wkd_urls(address)
        deadline = time.monotonic() + self.timeout
        try:
            return WkdAnswer("advanced", advanced, self._get(advanced, deadline))
        except HostNotFound:
            return WkdAnswer("direct", direct, self._get(direct, deadline))

    def _get(self, url: str, deadline: float) -> bytes:
        for hop in range(MAX_REDIRECTS + 1):
            try:
                status, location, body = self._request(url, deadline)
            except HostNotFound as exc:
                if hop:  # only a missing openpgpkey.<domain> means "try direct"
                    raise WkdError(str(exc)) from None
                raise
            if status == 200:
                return body
            if status in (404, 410):
                raise WkdNotFound(f"no key at {_origin(url)} (HTTP {status})")
            if status in (301, 302, 303, 307, 308) and location:
                target = urllib.parse.urljoin(url, location)
                if urllib.parse.urlsplit(target).scheme != "https":
                    raise WkdError(f"{_origin(url)} redirects to a non-HTTPS URL; refused")
                url = target
                continue
            raise WkdError(f"{_origin(url)} answered HTTP {status}")
        raise WkdError(f"more than {MAX_REDIRECTS} redirects")

    def _request(self, url: str, deadline: float) -> tuple[int, str, bytes]:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
        if parts.scheme != "https" or not host:
            raise WkdError("only https URLs are fetched")
        port = parts.port or 443
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WkdError(f"no answer from {host} within {self.timeout:g} s")
        addresses = self.resolver(host, port)
        connection = _Connection(host, port, addresses, self.ssl_context, remaining)
        watchdog = threading.Timer(remaining, _cut, args=(connection,))
        watchdog.daemon = True
        watchdog.start()
        try:
            connection.request(
                "GET",
                path,
                headers={
                    "User-Agent": USER_AGENT,
                    "Accept": "application/octet-stream",
                    "Accept-Encoding": "identity",
                },
            )
            response = connection.getresponse()
            location = response.getheader("Location", "") or ""
            if response.status != 200:
                return response.status, location, b""
            encoding = (response.getheader("Content-Encoding", "") or "identity").lower()
            if encoding != "identity":
                raise WkdError(f"{host} sent a {encoding!r}-encoded answer; refused")
            declared = response.getheader("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
                raise WkdError(f"the answer from {host} is larger than {self.max_bytes} bytes")
            return 200, location, self._read(response, host)
        except ssl.SSLCertVerificationError:
            raise WkdError(f"the TLS certificate of {host} does not verify") from None
        except (OSError, http.client.HTTPException) as exc:
            if time.monotonic() >= deadline:
                raise WkdError(f"no answer from {host} within {self.timeout:g} s") from None
            raise WkdError(f"cannot fetch from {host}: {_describe(exc)}") from None
        finally:
            watchdog.cancel()
            connection.close()

    def _read(self, response: http.client.HTTPResponse, host: str) -> bytes:
        body = bytearray()
        while True:
            chunk = response.read(CHUNK)
            if not chunk:
                return bytes(body)
            body += chunk
            if len(body) > self.max_bytes:
                raise WkdError(f"the answer from {host} is larger than {self.max_bytes} bytes")


def _cut(connection: _Connection) -> None:
    """The deadline passed: shut the socket so a blocked read returns at once."""
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"TLS error ({exc.reason or 'handshake failed'})"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, http.client.HTTPException):
        return "malformed HTTP answer"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__
