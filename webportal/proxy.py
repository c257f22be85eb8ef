"""Believe X-Forwarded-For and X-Forwarded-Proto only from the reverse proxies the admin named.

Behind a TLS-terminating proxy every request comes from the proxy's address, so
without this one client's failed logins would rate-limit everyone, and sessions,
the audit log and new-device alerts would all see 127.0.0.1. Believing the
headers from anyone else would let any client pick its own address and escape
the limits, so the default (`[portal] trusted_proxies` empty) ignores them.

A hop count N hands the request to werkzeug's ProxyFix as is (the N rightmost
X-Forwarded-For entries were added by proxies). A list of networks applies
ProxyFix only when the peer is in one of them, and then skips every further
rightmost entry that is itself a trusted proxy, so a chain of known proxies
still yields the client in front of them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from werkzeug.middleware.proxy_fix import ProxyFix

from gateway.settings import trusted_proxies

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from flask import Flask

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _in(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in net for net in networks)


def trusted_hops(peer: str, forwarded_for: str, networks: tuple[Network, ...]) -> int:
    """How many X-Forwarded-For entries, from the right, trusted proxies wrote (0: none).

    The peer must be a trusted proxy; it wrote the last entry. Each entry that is
    itself a trusted proxy's address means one more proxy hop to look through.
    """
    if not _in(peer, networks):
        return 0
    entries = [e for e in forwarded_for.split(",") if e.strip()] if forwarded_for else []
    hops = 1
    for entry in reversed(entries[1:]):
        if not _in(entry, networks):
            break
        hops += 1
    return min(hops, len(entries)) if entries else 1


class TrustedNetworksProxyFix:
    """ProxyFix for requests whose peer is in the trusted networks; others pass untouched."""

    def __init__(self, app: WSGIApplication, networks: Iterable[Network]) -> None:
        self.app = app
        self.networks = tuple(networks)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        hops = trusted_hops(
            environ.get("REMOTE_ADDR", ""), environ.get("HTTP_X_FORWARDED_FOR", ""), self.networks
        )
        if hops == 0:
            return self.app(environ, start_response)
        return ProxyFix(self.app, x_for=hops, x_proto=1)(environ, start_response)


def init_app(app: Flask, setting: str) -> None:
    """Wrap the app's WSGI callable as `[portal] trusted_proxies` says (unchanged when empty)."""
    trust = trusted_proxies(setting)
    wrapped: Any
    if isinstance(trust, int):
        if trust == 0:
            return
        # X-Forwarded-Proto: the nearest proxy's word (nginx sets it, not appends).
        wrapped = ProxyFix(app.wsgi_app, x_for=trust, x_proto=1)
    else:
        wrapped = TrustedNetworksProxyFix(app.wsgi_app, trust)
    app.wsgi_app = wrapped  # type: ignore[method-assign]
