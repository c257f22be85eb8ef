"""The WKD client against a real HTTPS directory: methods, TLS, redirects, limits, deadline.

Threats: a recipient domain (chosen by any sender) that answers with a downgrade
to plain HTTP, a huge or compressed body, a certificate that does not verify, or
no answer at all; and a domain that points at the gateway's own network.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest
import trustme

from gateway.wkd_client import (
    HostNotFound,
    WkdClient,
    WkdError,
    WkdNotFound,
    system_resolver,
    wkd_urls,
)
from keystore.wkd import local_part_hash
from tests.fakes.wkd_server import WkdServer, wkd_path

CAROL = "carol@partner.example"
KEY = b"\x99 pretend key bytes: the client does not parse them"


@pytest.fixture
def wkd(tls_ca: trustme.CA) -> Iterator[WkdServer]:
    server = WkdServer(tls_ca, ["openpgpkey.partner.example", "partner.example", "direct.example"])
    yield server
    server.close()


def client_for(server: WkdServer, ctx: ssl.SSLContext, **kw: object) -> WkdClient:
    options: dict[str, object] = {"timeout": 5.0, "max_bytes": 4096}
    options.update(kw)
    return WkdClient(resolver=server.resolver, ssl_context=ctx, **options)  # type: ignore[arg-type]


def test_urls_follow_the_draft() -> None:
    advanced, direct = wkd_urls("Joe.Doe@Example.ORG")
    name = local_part_hash("Joe.Doe")
    assert name == "iy9q119eutrkn8s1mk4r39qejnbu3n5q"  # the draft's own example
    assert advanced == (
        f"https://openpgpkey.example.org/.well-known/openpgpkey/example.org/hu/{name}?l=Joe.Doe"
    )
    assert direct == f"https://example.org/.well-known/openpgpkey/hu/{name}?l=Joe.Doe"
    with pytest.raises(WkdError):
        wkd_urls("no-at-sign")
    with pytest.raises(WkdError):
        wkd_urls("a@evil.example/path")


def test_advanced_method_answers_first(wkd: WkdServer, client_ssl_context: ssl.SSLContext) -> None:
    wkd.publish(CAROL, KEY)
    wkd.publish(CAROL, b"direct copy", method="direct")
    answer = client_for(wkd, client_ssl_context).fetch(CAROL)
    assert (answer.method, answer.body) == ("advanced", KEY)
    assert wkd.requests == [wkd_path(CAROL, "advanced")]


def test_direct_method_only_when_the_openpgpkey_host_does_not_exist(
    wkd: WkdServer, client_ssl_context: ssl.SSLContext
) -> None:
    dan = "dan@direct.example"
    wkd.publish(dan, KEY, method="direct")
    answer = client_for(wkd, client_ssl_context).fetch(dan)
    assert (answer.method, answer.body) == ("direct", KEY)
    assert answer.url.startswith("https://direct.example/.well-known/openpgpkey/hu/")

    # openpgpkey.partner.example exists: its 404 is the answer, no fallback.
    wkd.publish("eve@partner.example", KEY, method="direct")
    with pytest.raises(WkdNotFound):
        client_for(wkd, client_ssl_context).fetch("eve@partner.example")
    assert wkd.requests_for("eve@partner.example") == [wkd_path("eve@partner.example", "advanced")]


def test_unknown_domain_is_a_failure_not_a_crash(
    wkd: WkdServer, client_ssl_context: ssl.SSLContext
) -> None:
    with pytest.raises(HostNotFound):
        client_for(wkd, client_ssl_context).fetch("x@nowhere.example")


def test_https_redirect_is_followed_http_redirect_refused(
    wkd: WkdServer, client_ssl_context: ssl.SSLContext
) -> None:
    host, path = wkd_path(CAROL, "advanced")
    wkd.respond(host, path, status=302, headers={"Location": "https://partner.example/moved"})
    wkd.respond("partner.example", "/moved", body=KEY)
    assert client_for(wkd, client_ssl_context).fetch(CAROL).body == KEY

    wkd.respond(host, path, status=301, headers={"Location": "http://partner.example/moved"})
    with pytest.raises(WkdError, match="non-HTTPS"):
        client_for(wkd, client_ssl_context).fetch(CAROL)
    assert ("partner.example", "/moved") in wkd.requests  # only from the https redirect
    assert len([r for r in wkd.requests if r[1] == "/moved"]) == 1


def test_redirect_loop_ends(wkd: WkdServer, client_ssl_context: ssl.SSLContext) -> None:
    host, path = wkd_path(CAROL, "advanced")
    wkd.respond(host, path, status=302, headers={"Location": path})
    with pytest.raises(WkdError, match="redirects"):
        client_for(wkd, client_ssl_context).fetch(CAROL)


def test_oversized_and_encoded_answers_are_refused(
    wkd: WkdServer, client_ssl_context: ssl.SSLContext
) -> None:
    host, path = wkd_path(CAROL, "advanced")
    wkd.respond(host, path, body=b"x" * 5000)
    with pytest.raises(WkdError, match="larger than 4096"):
        client_for(wkd, client_ssl_context).fetch(CAROL)
    # A body larger than the limit without a Content-Length is cut off while reading.
    wkd.respond(host, path, body=b"x" * 50000, content_length=False)
    with pytest.raises(WkdError, match="larger than 4096"):
        client_for(wkd, client_ssl_context).fetch(CAROL)
    wkd.respond(host, path, body=KEY, headers={"Content-Encoding": "gzip"})
    with pytest.raises(WkdError, match="encoded"):
        client_for(wkd, client_ssl_context).fetch(CAROL)


def test_server_error_is_a_failure(wkd: WkdServer, client_ssl_context: ssl.SSLContext) -> None:
    host, path = wkd_path(CAROL, "advanced")
    wkd.respond(host, path, status=500)
    with pytest.raises(WkdError, match="HTTP 500") as err:
        client_for(wkd, client_ssl_context).fetch(CAROL)
    assert not isinstance(err.value, WkdNotFound)


def test_certificate_from_another_ca_is_refused(wkd: WkdServer) -> None:
    wkd.publish(CAROL, KEY)
    stranger = ssl.create_default_context()
    trustme.CA().configure_trust(stranger)
    with pytest.raises(WkdError, match="certificate"):
        client_for(wkd, stranger).fetch(CAROL)
    assert wkd.requests == []  # nothing was asked over the unverified connection


def test_certificate_for_another_name_is_refused(
    tls_ca: trustme.CA, client_ssl_context: ssl.SSLContext
) -> None:
    # The server's certificate names only partner.example; the name asked is another.
    server = WkdServer(tls_ca, ["partner.example"])
    try:

        def resolve(host: str, port: int) -> list[tuple[str, int]]:
            if host != "openpgpkey.other.example":
                raise HostNotFound(host)
            return [("127.0.0.1", server.port)]

        client = WkdClient(
            timeout=5, max_bytes=4096, resolver=resolve, ssl_context=client_ssl_context
        )
        with pytest.raises(WkdError, match="certificate"):
            client.fetch("x@other.example")
    finally:
        server.close()


def test_a_silent_server_costs_one_deadline(
    wkd: WkdServer, client_ssl_context: ssl.SSLContext
) -> None:
    host, path = wkd_path(CAROL, "advanced")
    wkd.hang(host, path)
    with pytest.raises(WkdError, match="within 1 s"):
        client_for(wkd, client_ssl_context, timeout=1.0).fetch(CAROL)


def test_system_resolver_refuses_private_addresses() -> None:
    with pytest.raises(WkdError, match="non-public"):
        system_resolver("localhost", 443)
    with pytest.raises(HostNotFound):
        system_resolver("does-not-exist.invalid", 443)
