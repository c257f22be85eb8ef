"""An open SMTP session asks whether its login holds once per `[security]
session_recheck_seconds`, not at every message: a busy mail program costs a database
read per interval (gateway.logins.still_valid), and a disabled account is cut off at
most one interval later."""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from gateway import db, logins
from gateway.admin import Actor
from gateway.admin import accounts as admin_accounts
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer
from tests.conftest import LoopThread
from tests.gateway.test_smtp_2fa import auth, starttls_client

ALICE, BOB = "alice@example.test", "bob@example.test"
T0 = dt.datetime(2026, 12, 6, 9, 0, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def server(runtime: Runtime, loop_thread: LoopThread, clock: Clock) -> Iterator[SubmissionServer]:
    server = SubmissionServer(runtime, clock=clock)
    loop_thread.run(server.start())
    yield server
    loop_thread.run(server.stop(grace=5))


def _message(subject: str) -> bytes:
    return f"From: {ALICE}\r\nTo: {BOB}\r\nSubject: {subject}\r\n\r\nHello.\r\n".encode()


def test_the_login_is_asked_again_once_per_interval(
    server: SubmissionServer,
    runtime: Runtime,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    interval = runtime.settings.security.session_recheck_seconds
    assert interval == 5.0  # the default
    asked: list[int] = []
    real = logins.still_valid

    def counting(sessions: object, credential: logins.Credential) -> frozenset[str] | None:
        asked.append(credential.account_id)
        return real(sessions, credential)  # type: ignore[arg-type]

    monkeypatch.setattr(logins, "still_valid", counting)
    with starttls_client(server, client_ssl_context) as client:
        assert auth(client, ALICE, mail_users[ALICE])[0] == 235
        for n in range(3):
            assert client.sendmail(ALICE, [BOB], _message(f"within {n}")) == {}
        assert asked == []  # AUTH itself was the check
        clock.now += dt.timedelta(seconds=interval)
        assert client.sendmail(ALICE, [BOB], _message("after")) == {}
        assert len(asked) == 1
        assert client.sendmail(ALICE, [BOB], _message("again within")) == {}
        assert len(asked) == 1
        with db.transaction(runtime.sessions) as session:
            admin_accounts.set_disabled(session, ALICE, True, actor=Actor("test"), now=T0)
        clock.now += dt.timedelta(seconds=interval)
        assert client.docmd("MAIL", f"FROM:<{ALICE}>")[0] == 530
    assert len(asked) == 2


def test_a_clock_set_back_asks_at_once(
    server: SubmissionServer,
    runtime: Runtime,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    clock: Clock,
) -> None:
    """A wall clock moved backwards must not stretch the interval."""
    with starttls_client(server, client_ssl_context) as client:
        assert auth(client, ALICE, mail_users[ALICE])[0] == 235
        with db.transaction(runtime.sessions) as session:
            admin_accounts.set_disabled(session, ALICE, True, actor=Actor("test"), now=T0)
        clock.now -= dt.timedelta(hours=1)
        assert client.docmd("MAIL", f"FROM:<{ALICE}>")[0] == 530
    with runtime.sessions() as session:
        assert (
            session.scalar(sa.select(sa.func.count()).select_from(sa.text("mailbox_messages"))) == 0
        )
