"""The "queued <id>" log line means the message's rows are durable.

Threat: an admin who reads "queued" in the log after a full disk believes a
message was accepted that is in fact lost (and its client got 451). On every
path (SMTP in process, a worker's batch, the webmail) the line is written only
after the commit that made the rows durable; a commit that fails logs no
"queued" line and the sender is told to retry.
"""

from __future__ import annotations

import logging
import smtplib
import sqlite3
import ssl
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from gateway import accounts, compose, db, outages, workers
from gateway.compose import Outgoing
from gateway.models import MailboxMessage
from gateway.pipeline import ClientInfo
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer
from gateway.timeutil import utcnow
from gateway.workers import Job

SQLITE_FULL = 13  # SQLite's primary result code for a full disk

ALICE, BOB = "alice@example.test", "bob@example.test"


class Disk:
    """The database's commits, in order with the pipeline's log lines. While `full`, a
    commit that would store a message fails as SQLite's does on a full disk (and the
    transaction is rolled back); others (logins, keys, reads) go through."""

    def __init__(self, runtime: Runtime) -> None:
        self.events: list[str] = []
        self.full = False
        self._commit = runtime.engine.dialect.do_commit
        self._stored = 0
        self._sqlite = runtime.engine.dialect.name == "sqlite"

    def fill(self, stored_now: int) -> None:
        self.full, self._stored = True, stored_now

    def do_commit(self, dbapi_connection: Any) -> None:
        if self.full:
            # The transaction sees its own rows: more than are stored means a message.
            cursor = dbapi_connection.dbapi_connection.execute(
                "SELECT count(*) FROM mailbox_messages"
            )
            if cursor.fetchone()[0] > self._stored:
                self.events.append("commit failed")
                raise self._full_disk()
        self._commit(dbapi_connection)
        self.events.append("commit")

    def _full_disk(self) -> Exception:
        """The driver's own error for a full disk, as each driver raises it (SQLAlchemy
        wraps it): SQLite's SQLITE_FULL, PostgreSQL's SQLSTATE 53100."""
        if self._sqlite:
            error = sqlite3.OperationalError("database or disk is full")
            error.sqlite_errorcode = SQLITE_FULL
            error.sqlite_errorname = "SQLITE_FULL"
            return error
        import psycopg

        return psycopg.errors.DiskFull("could not extend file: No space left on device")

    def queued_lines(self) -> list[str]:
        return [e for e in self.events if e.startswith("queued ")]


class _Recorder(logging.Handler):
    def __init__(self, disk: Disk) -> None:
        super().__init__(logging.INFO)
        self.disk = disk

    def emit(self, record: logging.LogRecord) -> None:
        self.disk.events.append(record.getMessage())


@pytest.fixture
def disk(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> Iterator[Disk]:
    found = Disk(runtime)
    monkeypatch.setattr(runtime.engine.dialect, "do_commit", found.do_commit)
    logger = logging.getLogger("gateway.pipeline")
    handler = _Recorder(found)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield found
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def stored(runtime: Runtime) -> int:
    with db.read_only(runtime.sessions) as session:
        return int(session.scalar(sa.select(sa.func.count()).select_from(MailboxMessage)) or 0)


def message(subject: str) -> bytes:
    return f"From: {ALICE}\r\nTo: {BOB}\r\nSubject: {subject}\r\n\r\nHello.\r\n".encode()


def assert_logged_after_its_commit(disk: Disk) -> None:
    [line] = disk.queued_lines()
    where = disk.events.index(line)
    assert disk.events[where - 1] == "commit", disk.events


def test_smtp_in_process_full_disk_452_and_no_queued_line(
    runtime: Runtime,
    mail_users: dict[str, str],
    submission_server: SubmissionServer,
    client_ssl_context: ssl.SSLContext,
    disk: Disk,
) -> None:
    with smtplib.SMTP("127.0.0.1", submission_server.submission_port, timeout=30) as client:
        client.starttls(context=client_ssl_context)
        client.login(ALICE, mail_users[ALICE])
        disk.fill(stored(runtime))
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail(ALICE, [BOB], message("lost"))
        assert refused.value.smtp_code == 452  # 4.3.1: the disk, not the message
        assert "commit failed" in disk.events
        assert disk.queued_lines() == []
        assert stored(runtime) == 0

        disk.full = False
        assert client.sendmail(ALICE, [BOB], message("kept")) == {}
    assert_logged_after_its_commit(disk)
    assert stored(runtime) == 1


def alice_account(runtime: Runtime) -> int:
    with db.read_only(runtime.sessions) as session:
        found = accounts.find_address(session, ALICE)
        assert found is not None
        return found.account_id


def _job(runtime: Runtime, subject: str) -> Job:
    return Job(
        account_id=alice_account(runtime),
        sender=ALICE,
        envelope_from=ALICE,
        recipients=(BOB,),
        raw=message(subject),
        client=ClientInfo(helo="client.example", ip="127.0.0.1", protocol="ESMTPSA"),
        received_at=utcnow(),
        log_id="s-test",
    )


def test_a_workers_batch_on_a_full_disk_fails_each_message_and_logs_no_queued_line(
    runtime: Runtime,
    mail_users: dict[str, str],
    disk: Disk,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # run_batch is what a worker process runs; here in this process, on this runtime.
    monkeypatch.setattr(workers, "_runtime", runtime)
    jobs = [_job(runtime, "one"), _job(runtime, "two")]
    disk.fill(stored(runtime))
    # An outage, said per message (the SMTP edge answers 452 4.3.1); the group is not
    # tried again message by message, since each would meet the same full disk.
    outcomes = workers.run_batch(jobs)
    assert [o.outage.kind if o and o.outage else o for o in outcomes] == [
        outages.Kind.DISK_FULL,
        outages.Kind.DISK_FULL,
    ]
    assert disk.events.count("commit failed") == 1
    assert disk.queued_lines() == []
    assert stored(runtime) == 0

    disk.full = False
    [outcome] = workers.run_batch([_job(runtime, "kept")])
    assert outcome is not None and outcome.queue_id
    assert_logged_after_its_commit(disk)


def test_webmail_send_on_a_full_disk_fails_and_logs_no_queued_line(
    runtime: Runtime, mail_users: dict[str, str], disk: Disk
) -> None:
    account_id = alice_account(runtime)
    outgoing = Outgoing(sender=ALICE, to=[BOB], subject="Webmail", text="Hallo")
    disk.fill(stored(runtime))
    with pytest.raises(sa.exc.OperationalError, match=r"disk is full|No space left"):
        compose.send(
            runtime, account_id, outgoing, password=None, client_ip="127.0.0.1", now=utcnow()
        )
    assert disk.queued_lines() == []
    assert stored(runtime) == 0

    disk.full = False
    compose.send(runtime, account_id, outgoing, password=None, client_ip="127.0.0.1", now=utcnow())
    assert_logged_after_its_commit(disk)
