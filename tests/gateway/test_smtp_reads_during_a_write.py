"""While another connection holds the database's write lock (a purge batch, a large
commit), SMTP commands that only read still answer.

Threat (availability): one DELETE of a 2M-row mail log held SQLite's write lock for
37 s and every SMTP command stalled. MAIL and RCPT only read, and reads need no lock
(WAL), but AUTH and DATA waiting for the lock held every thread of the event loop's
default pool, and the reads queued behind them. Here the default pool is filled with
writers waiting for a lock held by another connection; a new connection is greeted,
MAIL FROM (its login re-checked) and RCPT (looked up in the database) are answered,
all before the lock is released.
"""

from __future__ import annotations

import datetime as dt
import smtplib
import ssl
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from gateway import db, lookups
from gateway.models import MailLogEntry
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer
from tests.conftest import LoopThread
from tests.gateway.test_smtp_2fa import auth, starttls_client

ALICE, BOB = "alice@example.test", "bob@example.test"
T0 = dt.datetime(2026, 12, 6, 9, 0, tzinfo=dt.UTC)
DEFAULT_THREADS = 2
# Not a timing assertion: how long a client waits before calling the server stuck.
STUCK = 30


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


ROW = 1
TOUCH = sa.update(MailLogEntry).where(MailLogEntry.id == ROW).values(status="touched")


def add_row(runtime: Runtime) -> None:
    with db.transaction(runtime.sessions) as session:
        session.add(
            MailLogEntry(
                id=ROW,
                queue_id="Q1",
                message_id="",
                sender=ALICE,
                recipient=BOB,
                handling="pgp",
                status="sent",
                last_reply="",
                created_at=T0,
                updated_at=T0,
            )
        )


class WriteLock:
    """Another connection holding the write lock, as a purge batch does, until released:
    on SQLite the database's one write lock, on PostgreSQL the lock of the row every
    writer here wants."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.held = threading.Event()
        self.release = threading.Event()
        self.failed: list[BaseException] = []
        self.thread = threading.Thread(target=self._hold, name="lock-holder")

    def _hold(self) -> None:
        try:
            with db.transaction(self.runtime.sessions) as session:
                session.execute(TOUCH)  # a write: the lock is taken
                self.held.set()
                self.release.wait(STUCK * 4)
        except BaseException as exc:  # noqa: BLE001  (reported by the test)
            self.failed.append(exc)
            self.held.set()

    def __enter__(self) -> WriteLock:
        self.thread.start()
        assert self.held.wait(STUCK) and not self.failed, self.failed
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release.set()
        self.thread.join(STUCK)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def server(runtime: Runtime, loop_thread: LoopThread, clock: Clock) -> Iterator[SubmissionServer]:
    # A small default pool, so that a few waiting writers fill it (serve's has cpu + 4).
    loop_thread.loop.set_default_executor(ThreadPoolExecutor(max_workers=DEFAULT_THREADS))
    server = SubmissionServer(runtime, clock=clock)
    loop_thread.run(server.start())
    yield server
    loop_thread.run(server.stop(grace=5))


def fill_default_pool(loop_thread: LoopThread, runtime: Runtime) -> threading.Event:
    """Every thread of the loop's default pool taken by a writer waiting for the lock
    (as AUTH's and DATA's writes are); returns the event that lets them write."""
    started = threading.Semaphore(0)
    done = threading.Event()

    def writer() -> None:
        started.release()
        with db.transaction(runtime.sessions) as session:  # waits for the lock holder
            session.execute(TOUCH)
        done.set()

    for _ in range(DEFAULT_THREADS):
        loop_thread.loop.call_soon_threadsafe(
            lambda: loop_thread.loop.run_in_executor(None, writer)
        )
    for _ in range(DEFAULT_THREADS):
        assert started.acquire(timeout=STUCK)
    return done


def test_mail_and_rcpt_answer_while_another_connection_holds_the_write_lock(
    server: SubmissionServer,
    runtime: Runtime,
    loop_thread: LoopThread,
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    clock: Clock,
) -> None:
    add_row(runtime)
    with starttls_client(server, client_ssl_context) as client:
        assert auth(client, ALICE, mail_users[ALICE])[0] == 235
        with WriteLock(runtime) as lock:
            writers_done = fill_default_pool(loop_thread, runtime)
            lookups.clear_all()  # RCPT must ask the database
            clock.now += dt.timedelta(seconds=runtime.settings.security.session_recheck_seconds)
            client.sock.settimeout(STUCK)
            try:
                mail = client.docmd("MAIL", f"FROM:<{ALICE}>")  # re-checks the login: a read
                rcpt = client.docmd("RCPT", f"TO:<{BOB}>")
                unknown = client.docmd("RCPT", "TO:<nobody@example.test>")
                with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=STUCK) as fresh:
                    greeted = fresh.ehlo("client.example")
            except (TimeoutError, smtplib.SMTPServerDisconnected) as exc:
                pytest.fail(f"a read waited for the write lock: {exc!r}")
            assert not lock.release.is_set() and not writers_done.is_set()  # still held
        assert writers_done.wait(STUCK)
    assert mail[0] == 250, mail
    assert rcpt[0] == 250, rcpt
    assert unknown[0] == 550, unknown
    assert greeted[0] == 250, greeted
