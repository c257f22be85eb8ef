"""Behind a reverse proxy: the portal sees each real client, and only trusted proxies may say who.

Threat: behind the documented TLS-terminating proxy every request comes from
127.0.0.1, so one attacker's failed logins rate-limit everyone (and alerts and the
audit log name the proxy). The opposite threat: if X-Forwarded-For were believed
from anyone, a client could send a fresh address with each guess and never be
limited. These tests drive the real portal server (cheroot over TLS on port 0)
the way the proxy does, by adding the header on the connection.
"""

from __future__ import annotations

import http.cookiejar
import ipaddress
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import hypothesis.strategies as st
import pytest
import sqlalchemy as sa
from hypothesis import given

from gateway import db
from gateway.models import AuditEvent
from gateway.runtime import Runtime
from gateway.settings import SettingsError, load_settings, trusted_proxies
from webportal import create_app
from webportal.proxy import trusted_hops
from webportal.server import PortalServer

from .conftest import csrf_from

ATTACKER = "203.0.113.7"
NEIGHBOUR = "198.51.100.9"
LIMIT = 3


class Client:
    """A browser-like client (cookie jar, CSRF token from the form) behind the proxy."""

    def __init__(self, base: str, ctx: ssl.SSLContext, forwarded_for: str) -> None:
        self.base = base
        self.headers = {"X-Forwarded-For": forwarded_for, "X-Forwarded-Proto": "https"}
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=ctx),
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
        )

    def failed_login(self) -> int:
        """Post a wrong password; the status code (200: the form again, 429: limited)."""
        with self.opener.open(
            urllib.request.Request(f"{self.base}/login", headers=self.headers)  # noqa: S310
        ) as r:
            token = csrf_from(r.read().decode())
        body = urllib.parse.urlencode(
            {"email": "alice@example.test", "password": "wrong", "csrf_token": token}
        ).encode()
        request = urllib.request.Request(  # noqa: S310
            f"{self.base}/login", data=body, headers=self.headers
        )
        try:
            with self.opener.open(request) as response:
                status: int = response.status
                return status
        except urllib.error.HTTPError as exc:
            exc.close()
            return exc.code


@pytest.fixture
def serve_portal(runtime: Runtime) -> Iterator[Callable[[str], PortalServer]]:
    """Start the real portal with `[portal] trusted_proxies` set to the given value."""
    started: list[tuple[Runtime, PortalServer]] = []

    def start(trusted: str) -> PortalServer:
        rt = Runtime.open(
            runtime.settings.replace(
                portal={"login_rate_limit": f"{LIMIT}/minute", "trusted_proxies": trusted},
                # Lockout is per name: keep it out of the way so only the per-client limit acts.
                security={"lockout_threshold": 100},
            )
        )
        server = PortalServer(create_app(rt), rt.settings)
        server.start()
        started.append((rt, server))
        return server

    yield start
    for rt, server in started:
        server.stop()
        rt.close()


def _audited_ips(runtime: Runtime) -> list[str | None]:
    with db.read_only(runtime.sessions) as session:
        return list(
            session.scalars(
                sa.select(AuditEvent.ip).where(AuditEvent.action == "login").order_by(AuditEvent.id)
            )
        )


@pytest.mark.parametrize("trusted", ["1", "127.0.0.0/8, 10.0.0.0/8"])
def test_two_clients_behind_the_proxy_do_not_share_a_limit(
    trusted: str,
    serve_portal: Callable[[str], PortalServer],
    runtime: Runtime,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    portal = serve_portal(trusted)
    attacker = Client(portal.url, client_ssl_context, ATTACKER)
    neighbour = Client(portal.url, client_ssl_context, NEIGHBOUR)
    assert [attacker.failed_login() for _ in range(LIMIT)] == [200] * LIMIT
    assert attacker.failed_login() == 429
    # Same proxy address, other client: its own budget.
    assert neighbour.failed_login() == 200
    assert attacker.failed_login() == 429
    ips = _audited_ips(runtime)
    assert ips == [ATTACKER] * LIMIT + [NEIGHBOUR]


@pytest.mark.parametrize("trusted", ["", "10.0.0.0/8"])
def test_without_a_trusted_proxy_the_header_is_ignored(
    trusted: str,
    serve_portal: Callable[[str], PortalServer],
    runtime: Runtime,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
) -> None:
    """Unset, or the peer (127.0.0.1) not in the list: the header changes nothing."""
    portal = serve_portal(trusted)
    attacker = Client(portal.url, client_ssl_context, ATTACKER)
    assert [attacker.failed_login() for _ in range(LIMIT)] == [200] * LIMIT
    assert attacker.failed_login() == 429
    # A made-up address per request does not buy more guesses.
    for fake in (NEIGHBOUR, "192.0.2.1"):
        assert Client(portal.url, client_ssl_context, fake).failed_login() == 429
    assert _audited_ips(runtime) == ["127.0.0.1"] * LIMIT


def test_a_chain_of_trusted_proxies_is_looked_through() -> None:
    nets = trusted_proxies("10.0.0.0/8, 127.0.0.1/32")
    assert isinstance(nets, tuple)
    assert trusted_hops("127.0.0.1", f"{ATTACKER}, 10.1.2.3", nets) == 2
    assert trusted_hops("127.0.0.1", f"10.9.9.9, {ATTACKER}", nets) == 1
    assert trusted_hops("192.0.2.5", ATTACKER, nets) == 0


NETS = trusted_proxies("10.0.0.0/8, 127.0.0.1/32")
_ip = st.ip_addresses().map(str)
_entry = _ip | st.sampled_from(["10.0.0.1", "10.200.3.4", "127.0.0.1"]) | st.text(max_size=12)


def _trusted(entry: str) -> bool:
    try:
        ip = ipaddress.ip_address(entry.strip())
    except ValueError:
        return False
    return any(ip in net for net in NETS)  # type: ignore[union-attr]


@given(
    entries=st.lists(_entry.filter(lambda e: "," not in e and e.strip()), min_size=1, max_size=6)
)
def test_the_hops_stop_at_the_first_address_that_is_not_a_proxy(entries: list[str]) -> None:
    """ProxyFix will use entries[-hops]: every entry right of it is a trusted proxy, and it
    is either the leftmost entry or not a proxy, whatever a client wrote to its left."""
    hops = trusted_hops("127.0.0.1", ", ".join(entries), NETS)  # type: ignore[arg-type]
    assert 1 <= hops <= len(entries)
    assert all(_trusted(e) for e in entries[len(entries) - hops + 1 :])
    assert hops == len(entries) or not _trusted(entries[-hops])


def test_setting_spellings() -> None:
    assert trusted_proxies("") == 0
    assert trusted_proxies(" 2 ") == 2
    assert trusted_proxies("127.0.0.1, ::1") == (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("::1/128"),
    )
    with pytest.raises(SettingsError, match=r"\[portal\] trusted_proxies: 'nginx'"):
        trusted_proxies("127.0.0.1, nginx")
    with pytest.raises(SettingsError, match="at most 10"):
        trusted_proxies("99")


@pytest.mark.parametrize(
    ("toml", "expected"),
    [("1", "1"), ('["127.0.0.1/32", "::1"]', "127.0.0.1/32, ::1"), ('"10.0.0.0/8"', "10.0.0.0/8")],
)
def test_toml_takes_a_number_or_a_list(tmp_path: Path, toml: str, expected: str) -> None:
    root = tmp_path
    (root / "sealgate.toml").write_text(f"[portal]\ntrusted_proxies = {toml}\n")
    assert load_settings(root, env={}).portal.trusted_proxies == expected
