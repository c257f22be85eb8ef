"""SMTP submission while PostgreSQL is stopped or stops answering, and after.

Found by an operations probe of a running `serve` (2026-12-06): with PostgreSQL
stopped each SMTP session logged a traceback; and a server that stopped answering
without closing its connections (its host paused) held each request about 150 s with
nothing logged, as `gateway.db.create_engine` set no libpq timeouts.

The database is reached through a TCP proxy of the test's own, in front of the
machine's PostgreSQL (which is never stopped): `down()` closes it (connection
refused), `stall()` keeps accepting connections and never answers. A userspace proxy
cannot stop the kernel from acknowledging what a client sends, so an established
connection that the proxy stalls would look alive to TCP keepalives and
tcp_user_timeout (only a host that is really paused stops acknowledging): the stall
here cuts the established connections and stalls new ones, which `connect_timeout`
bounds; the keepalive and tcp_user_timeout options are checked on a live connection.
"""

from __future__ import annotations

import contextlib
import html
import imaplib
import re
import socket
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from gateway import db
from gateway.imap.server import ImapServer
from gateway.models import Autoresponder
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer
from tests.conftest import TEST_DATABASE_URL
from tests.gateway.outage_support import (
    capture,
    first_refusal,
    fresh_watch,
    outage_lines,
    tracebacks,
)
from tests.gateway.test_smtp_2fa import auth, starttls_client
from tests.gateway.test_smtp_submission import mailbox_rows, message
from tests.webportal.conftest import csrf_from
from tests.webportal.test_nul_in_typed_text import opened
from tests.webportal.test_outage_page import _logged_in
from tests.webportal.test_outage_typed_text import (
    NOTE,
    TEXT,
    assert_compose_back,
    compose_fields,
    readonly_box,
)
from tests.webportal.test_secure import inbox as secure_inbox
from tests.webportal.webmail_support import Webmail, queued, rows, webmail_app
from webportal import create_app
from webportal.server import PortalServer

__all__ = ["fresh_watch", "opened"]

ALICE, BOB = "alice@example.test", "bob@example.test"

pytestmark = pytest.mark.skipif(
    not TEST_DATABASE_URL, reason="needs PostgreSQL (SEALGATE_TEST_DATABASE_URL)"
)


class TcpProxy:
    """Forwards 127.0.0.1:<port> to `target` until told to go down or to stall."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self.stalled = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._serve()

    def _serve(self) -> None:
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                self._open.append(client)
                if self.stalled:
                    continue  # held open, never answered
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._open.append(upstream)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _cut(self) -> None:
        with self._lock:
            sockets, self._open = self._open, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def down(self) -> None:
        """As a stopped server: connections refused, open ones closed."""
        self._stop_listening()
        self._cut()

    def _stop_listening(self) -> None:
        # shutdown() first: close() alone leaves a blocked accept() accepting.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()

    def stall(self) -> None:
        self.stalled = True
        self._cut()

    def up(self) -> None:
        self.stalled = False
        self._cut()
        if self._listener.fileno() == -1:
            self._listener = socket.create_server(("127.0.0.1", self.port))
            self._serve()

    def close(self) -> None:
        self._stop_listening()
        self._cut()


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    url = sa.engine.make_url(TEST_DATABASE_URL)
    running = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    yield running
    running.close()


@pytest.fixture
def test_env(test_env: dict[str, str], proxy: TcpProxy) -> dict[str, str]:
    url = sa.engine.make_url(TEST_DATABASE_URL).set(host="127.0.0.1", port=proxy.port)
    test_env["SEALGATE_DATABASE_URL"] = url.render_as_string(hide_password=False)
    test_env["SEALGATE_DATABASE_DEAD_SERVER_SECONDS"] = "3"
    return test_env


def _session(server: SubmissionServer, ctx: ssl.SSLContext, users: dict[str, str]) -> Any:
    client = starttls_client(server, ctx)
    assert auth(client, ALICE, users[ALICE])[0] == 235
    return client


@pytest.mark.usefixtures("fresh_watch")
@pytest.mark.parametrize("how", ["down", "stall"])
def test_postgres_lost_is_451_once_logged_and_recovers(
    how: str,
    proxy: TcpProxy,
    submission_server: SubmissionServer,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    capture(caplog)
    runtime = submission_server.runtime
    assert runtime.engine.url.port == proxy.port
    with _session(submission_server, client_ssl_context, mail_users) as client:
        assert first_refusal(client, ALICE, BOB, message(ALICE, BOB, "before"))[0] == 250
        getattr(proxy, how)()
        # The client's own timeout is far beyond the setting (3 s): before, a stalled
        # server held the command for ever.
        client.sock.settimeout(60)
        replies = [
            first_refusal(client, ALICE, BOB, message(ALICE, BOB, f"during-{n}")) for n in range(2)
        ]
        proxy.up()
        assert [(code, text[:5]) for code, text in replies] == [(451, "4.3.0")] * 2, replies
        assert first_refusal(client, ALICE, BOB, message(ALICE, BOB, "after"))[0] == 250
    assert sorted(m.subject for m in mailbox_rows(runtime, BOB)) == ["after", "before"]
    lines = outage_lines(caplog)
    assert len(lines) == 2, lines
    assert lines[0].startswith("outage: database unavailable (")
    assert lines[1].startswith("outage ended: database unavailable")
    assert tracebacks(caplog) == []


def test_connections_carry_the_dead_server_options(runtime: Runtime) -> None:
    with runtime.engine.connect() as conn:
        driver = conn.connection.driver_connection
        parameters = driver.info.get_parameters()  # type: ignore[union-attr]
    assert {k: parameters.get(k) for k in DEAD_SERVER_KEYS} == {
        "connect_timeout": "3",
        "keepalives": "1",
        "keepalives_idle": "1",
        "keepalives_interval": "1",
        "keepalives_count": "3",
        "tcp_user_timeout": "3000",
    }


DEAD_SERVER_KEYS = (
    "connect_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
)


@pytest.mark.usefixtures("fresh_watch")
def test_portal_and_imap_with_postgres_down(
    proxy: TcpProxy,
    runtime: Runtime,
    mail_users: dict[str, str],
    imap_server: ImapServer,
    client_ssl_context: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The portal answers its 503 page, IMAP NO [UNAVAILABLE]; both recover."""
    capture(caplog)
    portal = PortalServer(create_app(runtime), runtime.settings)
    portal.start()
    imap = imaplib.IMAP4_SSL("127.0.0.1", imap_server.tls_port, ssl_context=client_ssl_context)
    try:
        assert imap.login(ALICE, mail_users[ALICE])[0] == "OK"
        assert imap.select("INBOX")[0] == "OK"
        opener = _logged_in(portal, client_ssl_context)
        proxy.down()
        with pytest.raises(urllib.error.HTTPError) as caught:
            opener.open(f"{portal.url}/inbox")
        with caught.value as error:
            assert (error.code, error.headers["Retry-After"]) == (503, "60")
            assert "Temporarily unavailable" in error.read().decode()
        typ, data = imap.status("INBOX", "(MESSAGES)")
        assert (typ, data[0][:13]) == ("NO", b"[UNAVAILABLE]")
        proxy.up()
        with opener.open(f"{portal.url}/inbox") as response:
            assert response.status == 200
        typ, data = imap.status("INBOX", "(MESSAGES)")
        assert (typ, data[0][:16]) == ("OK", b"INBOX (MESSAGES ")
    finally:
        imap.logout()
        portal.stop()
    lines = outage_lines(caplog)
    assert len(lines) == 2, lines
    assert lines[0].startswith("outage: database unavailable (")
    assert tracebacks(caplog) == []


@pytest.mark.usefixtures("fresh_watch")
@pytest.mark.parametrize("how", ["down", "stall"])
def test_webmail_send_with_postgres_lost_gives_the_form_back_and_sends_after(
    how: str, proxy: TcpProxy, runtime: Runtime, mail_users: dict[str, str]
) -> None:
    """The account cannot be loaded: the compose form comes back drawn from the post,
    503 with Retry-After, nothing stored or queued; sent again after, it goes."""
    app = webmail_app(runtime)
    app.config["PROPAGATE_EXCEPTIONS"] = False  # as `serve`: errors go to their handlers
    alice = Webmail(app.test_client()).login(ALICE)
    fields = compose_fields(alice)
    getattr(proxy, how)()
    try:
        answer = alice.client.post("/compose", data=fields, content_type="multipart/form-data")
    finally:
        proxy.up()
    page = assert_compose_back(answer)
    assert rows(runtime, BOB) == [] and queued(runtime) == []
    sent = alice.client.post(
        "/compose",
        data={**fields, "csrf_token": csrf_from(page)},
        content_type="multipart/form-data",
    )
    assert sent.status_code == 303
    assert len(rows(runtime, BOB)) == 1


@pytest.mark.usefixtures("fresh_watch")
def test_a_secure_page_answer_and_an_away_message_with_postgres_down_are_kept_to_copy(
    proxy: TcpProxy, runtime: Runtime, opened: tuple[FlaskClient, str]
) -> None:
    """Their forms need the database to be drawn: the 503 page holds the text."""
    client, token = opened
    client.application.config["PROPAGATE_EXCEPTIONS"] = False
    answer_csrf = csrf_from(client.get(f"/s/{token}").text)
    alice = Webmail(webmail_app(runtime).test_client()).login(ALICE)
    alice.client.application.config["PROPAGATE_EXCEPTIONS"] = False
    match = re.search(r'href="(/autoresponder/new/\d+)"', alice.get("/autoresponder").text)
    assert match
    away_csrf = csrf_from(alice.get(match.group(1)).text)
    proxy.down()
    try:
        answer = client.post(
            f"/s/{token}/reply",
            data={"csrf_token": answer_csrf, "text": TEXT},
            content_type="multipart/form-data",
        )
        away = alice.client.post(
            match.group(1),
            data={"name": "Urlaub", "body": TEXT, "weekday": "0", "csrf_token": away_csrf},
        )
    finally:
        proxy.up()
    for page, field in ((answer, "text"), (away, "body")):
        assert (page.status_code, page.headers.get("Retry-After")) == (503, "60")
        assert NOTE in html.unescape(page.text)
        assert readonly_box(page.text, field) == TEXT
    assert secure_inbox(runtime, ALICE) == []
    with db.read_only(runtime.sessions) as session:
        assert session.query(Autoresponder).count() == 0
