"""The portal while its database is away, and after.

Found by an operations probe of a running `serve` (2026-12-06): with the database
unreachable each request logged a full traceback and got the generic 500 page ("try
again later", though nothing said the server knew). Now: a 503 page in the browser's
language (the account's cannot be loaded) with Retry-After, one log line for the
outage and one when it ends, and the portal serves again by itself.
"""

from __future__ import annotations

import http.cookiejar
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest

from gateway.runtime import Runtime
from tests.conftest import TEST_DATABASE_URL
from tests.gateway.outage_support import (
    capture,
    fresh_watch,
    outage_lines,
    ring_unavailable,
    sqlite_file_unavailable,
    tracebacks,
)
from webportal import create_app
from webportal.server import PortalServer

from .conftest import csrf_from
from .webmail_support import ALICE, BOB, Webmail, field_value, rows, webmail_app

__all__ = ["fresh_watch"]


@pytest.fixture
def portal(runtime: Runtime) -> Iterator[PortalServer]:
    server = PortalServer(create_app(runtime), runtime.settings)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _logged_in(portal: PortalServer, ctx: ssl.SSLContext) -> urllib.request.OpenerDirector:
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=ctx),
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
    )
    with opener.open(f"{portal.url}/login") as response:
        token = csrf_from(response.read().decode())
    body = urllib.parse.urlencode(
        {"email": "alice@example.test", "password": "portal-alice-smtp-pw", "csrf_token": token}
    ).encode()
    with opener.open(f"{portal.url}/login", data=body) as response:
        assert response.url == f"{portal.url}/inbox"
    return opener


def _get(opener: urllib.request.OpenerDirector, url: str, language: str) -> tuple[int, str, str]:
    request = urllib.request.Request(url, headers={"Accept-Language": language})  # noqa: S310  (https to the test server)
    try:
        with opener.open(request) as response:
            return (
                response.status,
                response.headers.get("Retry-After", ""),
                response.read().decode(),
            )
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers.get("Retry-After", ""), error.read().decode()


@pytest.mark.usefixtures("fresh_watch")
@pytest.mark.skipif(bool(TEST_DATABASE_URL), reason="the SQLite file is taken away")
def test_database_unavailable_is_a_503_page_in_the_browsers_language(
    portal: PortalServer,
    runtime: Runtime,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    capture(caplog)
    opener = _logged_in(portal, client_ssl_context)
    with sqlite_file_unavailable(runtime):
        german = _get(opener, f"{portal.url}/inbox", "de-CH, en;q=0.5")
        french = _get(opener, f"{portal.url}/login", "fr")
        english = _get(opener, f"{portal.url}/inbox", "en")
        # A secure page logs its own errors (by the link's digest, never its token).
        secure = _get(opener, f"{portal.url}/s/{'A' * 43}", "fr")
    assert german[:2] == (503, "60")
    assert "Vorübergehend nicht verfügbar" in german[2]
    assert french[:2] == (503, "60")
    assert "Temporairement indisponible" in french[2]
    assert english[:2] == (503, "60")
    assert "Temporarily unavailable" in english[2]
    assert secure[:2] == (503, "60")
    assert "Temporairement indisponible" in secure[2]
    assert "Traceback" not in german[2] + french[2] + english[2] + secure[2]

    status, _, page = _get(opener, f"{portal.url}/inbox", "en")
    assert status == 200 and "Signed in as alice@example.test" in page
    lines = outage_lines(caplog)
    assert len(lines) == 2, lines
    assert lines[0].startswith("outage: database unavailable (SQLITE_CANTOPEN)")
    assert lines[1].startswith("outage ended: database unavailable")
    assert tracebacks(caplog) == []


@pytest.mark.usefixtures("fresh_watch")
def test_webmail_send_with_the_ring_away_is_the_503_page_and_sends_nothing(
    runtime: Runtime, mail_users: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Send needs the ring to seal the message: without it, nothing is sent, the
    outage page answers, and the log has one line, not a traceback per click."""
    capture(caplog)
    alice = Webmail(webmail_app(runtime).test_client()).login(ALICE)
    page = alice.get("/compose").text
    fields = {
        "from": ALICE,
        "to": BOB,
        "subject": "Versiegelt",
        "text": "t",
        "encrypt": "yes",
        "action": "send",
        "send_token": field_value(page, "send_token"),
        "csrf_token": csrf_from(page),
    }
    with ring_unavailable(runtime):
        answers = [alice.client.post("/compose", data=fields) for _ in range(2)]
    assert [(a.status_code, a.headers.get("Retry-After")) for a in answers] == [(503, "60")] * 2
    assert rows(runtime, BOB) == []
    assert alice.client.post("/compose", data=fields).status_code == 303
    assert len(rows(runtime, BOB)) == 1
    lines = outage_lines(caplog)
    assert len(lines) == 2, lines
    assert lines[0].startswith("outage: master key ring unavailable")
    assert tracebacks(caplog) == []
