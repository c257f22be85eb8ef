"""The pipeline's worker processes and group commit: nothing lost, nothing twice.

Threats: a worker that dies mid-message must not lose a message its client was
told is queued (no `250` before the commit), must not store it twice when the
client sends it again (a worker that dies after its commit but before it answers:
the client gets `250`, not `451`), and must not take the server down; one message that fails
in a shared commit must not fail the others; no worker outlives the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import smtplib
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway import accounts, db, groupcommit
from gateway.admin import maillog
from gateway.models import MailboxMessage
from gateway.pipeline import ClientInfo, Copy, RejectMessage, Sender, Submission, prepare, submit
from gateway.runtime import Runtime
from gateway.smtp_server import SubmissionServer
from gateway.timeutil import utcnow
from gateway.workers import Job, Outcome, WorkerLost, WorkerPool, _Costs
from tests.conftest import LoopThread
from tests.fakes.stall import (
    BOOM,
    GATE,
    GATE_FIFO,
    PID_FILE,
    SLOW,
    STALL_DIR_ENV,
    die_after_commit,
    die_before_commit,
    gate_then_die_after_commit,
    raise_on_boom,
    stall_first_batch,
    worker_pid_after_pause,
)
from tests.processes import wait_gone

ALICE, BOB = "alice@example.test", "bob@example.test"


def message(n: int, *, encrypt: bool = False) -> bytes:
    control = "X-Sealgate-Encrypt: yes\r\n" if encrypt else ""
    return (
        f"From: {ALICE}\r\nTo: {BOB}\r\nSubject: pool-{n}\r\n{control}"
        f"Message-ID: <pool-{n}@example.test>\r\n\r\nmessage number {n}\r\n"
    ).encode()


def queue_ids_in_mailbox(runtime: Runtime, address: str) -> list[str]:
    with db.read_only(runtime.sessions) as session:
        return list(
            session.scalars(
                sa.select(MailboxMessage.queue_id)
                .join(MailboxMessage.address)
                .where(sa.text("addresses.address = :a"))
                .params(a=address)
            )
        )


@pytest.fixture
def worker_env(
    test_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> dict[str, str]:
    """Workers load their settings from the environment they inherit, as under serve."""
    for key, value in test_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv(STALL_DIR_ENV, str(tmp_path))
    return test_env


@contextlib.contextmanager
def pool_server(
    runtime: Runtime, loop_thread: LoopThread, pool: WorkerPool
) -> Iterator[SubmissionServer]:
    loop_thread.run(pool.start())
    server = SubmissionServer(runtime, pool=pool)
    loop_thread.run(server.start())
    try:
        yield server
    finally:
        pids = pool.pids()
        loop_thread.run(server.stop(grace=5))
        loop_thread.run(pool.close())
        assert wait_gone(pids) == [], "worker processes outlived the pool"


@pytest.fixture
def pooled(
    runtime: Runtime,
    mail_users: dict[str, str],
    worker_env: dict[str, str],
    loop_thread: LoopThread,
) -> Iterator[tuple[SubmissionServer, WorkerPool]]:
    pool = WorkerPool(runtime.settings.data_dir, 2, max_group=8, sessions=runtime.sessions)
    with pool_server(runtime, loop_thread, pool) as server:
        yield server, pool


def test_four_connections_through_two_workers_each_message_once(
    pooled: tuple[SubmissionServer, WorkerPool],
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    runtime: Runtime,
) -> None:
    server, pool = pooled
    acked: dict[int, str] = {}
    errors: list[BaseException] = []

    def client(first: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=60) as smtp:
                smtp.starttls(context=client_ssl_context)
                smtp.login(ALICE, mail_users[ALICE])
                for n in range(first, first + 6):
                    smtp.mail(ALICE)
                    smtp.rcpt(BOB)
                    code, reply = smtp.data(message(n, encrypt=n % 2 == 0))
                    assert code == 250, reply
                    acked[n] = reply.decode().rsplit(" ", 1)[1]
        except BaseException as exc:  # noqa: BLE001  (re-raised in the test thread)
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(first,)) for first in (0, 6, 12, 18)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert len(acked) == 24
    stored = queue_ids_in_mailbox(runtime, BOB)
    assert sorted(stored) == sorted(acked.values())
    # Encrypted ones needed the sender's key: the worker opened the ring itself.
    sent = queue_ids_in_mailbox(runtime, ALICE)
    assert {acked[n] for n in range(0, 24, 2)} <= set(sent)
    assert pool.restarts == 0


def test_a_worker_killed_mid_message_gets_451_and_the_retry_is_stored_once(
    runtime: Runtime,
    mail_users: dict[str, str],
    worker_env: dict[str, str],
    loop_thread: LoopThread,
    client_ssl_context: ssl.SSLContext,
    tmp_path: Path,
) -> None:
    pool = WorkerPool(
        runtime.settings.data_dir,
        1,
        max_group=8,
        batch=stall_first_batch,
        sessions=runtime.sessions,
    )
    with pool_server(runtime, loop_thread, pool) as server:
        first_workers = pool.pids()
        replies: list[tuple[int, bytes]] = []
        with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=60) as smtp:
            smtp.starttls(context=client_ssl_context)
            smtp.login(ALICE, mail_users[ALICE])

            def send() -> None:
                smtp.mail(ALICE)
                smtp.rcpt(BOB)
                replies.append(smtp.data(message(1)))

            sender = threading.Thread(target=send)
            sender.start()
            pid_file = tmp_path / PID_FILE
            deadline = time.monotonic() + 60
            while not pid_file.exists() or not pid_file.read_text():
                assert time.monotonic() < deadline, "the worker never got the message"
                time.sleep(0.02)
            stalled = int(pid_file.read_text())
            assert stalled in first_workers
            os.kill(stalled, signal.SIGKILL)
            sender.join(60)
            [(code, reply)] = replies
            assert code == 451, reply
            assert queue_ids_in_mailbox(runtime, BOB) == []

            # The client sends it again, on the same connection, to a new worker.
            smtp.rset()
            smtp.mail(ALICE)
            smtp.rcpt(BOB)
            code, reply = smtp.data(message(1))
            assert code == 250, reply
            queue_id = reply.decode().rsplit(" ", 1)[1]
        assert queue_ids_in_mailbox(runtime, BOB) == [queue_id]
        assert pool.restarts == 1
        assert stalled not in pool.pids()
        assert wait_gone(first_workers) == []


def _send(smtp: smtplib.SMTP, n: int) -> tuple[int, str]:
    """One message from Alice to Bob: the reply code and its last word (the queue id)."""
    smtp.mail(ALICE)
    smtp.rcpt(BOB)
    code, reply = smtp.data(message(n))
    if code != 250:
        smtp.rset()
    return code, reply.decode().rsplit(" ", 1)[1]


def test_a_worker_killed_after_its_commit_answers_250_and_the_message_is_stored_once(
    runtime: Runtime,
    mail_users: dict[str, str],
    worker_env: dict[str, str],
    loop_thread: LoopThread,
    client_ssl_context: ssl.SSLContext,
) -> None:
    """The worker commits, then dies before it answers: serve finds the message stored
    and answers `250` with its queue id, so the client has no reason to send it again."""
    pool = WorkerPool(
        runtime.settings.data_dir,
        1,
        max_group=8,
        batch=die_after_commit,
        sessions=runtime.sessions,
    )
    with pool_server(runtime, loop_thread, pool) as server:
        first_workers = pool.pids()
        with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=60) as smtp:
            smtp.starttls(context=client_ssl_context)
            smtp.login(ALICE, mail_users[ALICE])
            code, queue_id = _send(smtp, 1)
            assert code == 250, queue_id
            assert queue_ids_in_mailbox(runtime, BOB) == [queue_id]
            # The connection goes on, to the new worker.
            code, second = _send(smtp, 2)
            assert code == 250, second
        assert sorted(queue_ids_in_mailbox(runtime, BOB)) == sorted([queue_id, second])
        assert pool.restarts == 1
        assert wait_gone(first_workers) == []


def test_a_worker_killed_before_its_commit_answers_451_and_the_retry_is_stored_once(
    runtime: Runtime,
    mail_users: dict[str, str],
    worker_env: dict[str, str],
    loop_thread: LoopThread,
    client_ssl_context: ssl.SSLContext,
) -> None:
    pool = WorkerPool(
        runtime.settings.data_dir,
        1,
        max_group=8,
        batch=die_before_commit,
        sessions=runtime.sessions,
    )
    with pool_server(runtime, loop_thread, pool) as server:
        with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=60) as smtp:
            smtp.starttls(context=client_ssl_context)
            smtp.login(ALICE, mail_users[ALICE])
            code, reply = _send(smtp, 1)
            assert code == 451, reply
            assert queue_ids_in_mailbox(runtime, BOB) == []
            code, queue_id = _send(smtp, 1)  # the client sends it again
            assert code == 250, queue_id
        assert queue_ids_in_mailbox(runtime, BOB) == [queue_id]
        assert pool.restarts == 1


def test_a_lost_batch_answers_each_message_by_what_the_database_holds(
    runtime: Runtime,
    mail_users: dict[str, str],
    worker_env: dict[str, str],
    loop_thread: LoopThread,
    tmp_path: Path,
) -> None:
    """Two messages travel as one batch; one is stored, one fails in the pipeline; then
    the worker dies before it answers: queued for the first, 451 for the second."""
    fifo = tmp_path / GATE_FIFO
    os.mkfifo(fifo)
    pool = WorkerPool(
        runtime.settings.data_dir,
        1,
        max_group=8,
        batch=gate_then_die_after_commit,
        sessions=runtime.sessions,
    )
    loop_thread.run(pool.start())
    alice = _account_id(runtime, ALICE)
    stored, failed = _job(alice, 1, "stored"), _job(999_999, 2, "no such account")

    def open_the_gate() -> None:
        with fifo.open("wb"):
            pass

    async def one_batch_lost() -> list[Outcome | BaseException | None]:
        # Tasks start in order: the gate takes the idle worker, the two others wait
        # for it and then go out together.
        gate = asyncio.ensure_future(pool.run(_job(alice, 0, GATE)))
        both = [asyncio.ensure_future(pool.run(job)) for job in (stored, failed)]
        await asyncio.to_thread(open_the_gate)
        await gate
        return list(await asyncio.gather(*both, return_exceptions=True))

    try:
        first, second = loop_thread.run(one_batch_lost())
    finally:
        loop_thread.run(pool.close())
    assert isinstance(first, Outcome) and first.recovered
    assert first.queue_id == stored.queue_id and first.methods == ("plain",)
    assert isinstance(second, WorkerLost)
    assert queue_ids_in_mailbox(runtime, BOB) == [stored.queue_id]
    assert pool.restarts == 1


# A COMMIT that takes a minute: a deferred trigger runs inside it, before it is final.
_SLOW_COMMIT = (
    "CREATE FUNCTION test_slow_commit() RETURNS trigger LANGUAGE plpgsql"
    " AS $$ BEGIN PERFORM pg_sleep(60); RETURN NULL; END $$",
    "CREATE CONSTRAINT TRIGGER test_slow_commit AFTER INSERT ON mail_log"
    " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_slow_commit()",
)
_NO_SLOW_COMMIT = (
    "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"
    " WHERE wait_event = 'PgSleep' AND application_name LIKE 'sealgate-worker-%'",
    "DROP TRIGGER IF EXISTS test_slow_commit ON mail_log",
    "DROP FUNCTION IF EXISTS test_slow_commit()",
)


def _session_in_commit(runtime: Runtime) -> str:
    """The application name of the worker session that is in its (slow) COMMIT, once it is."""
    deadline = time.monotonic() + 60
    while True:
        with runtime.engine.connect() as conn:  # pg_stat_activity is read once a transaction
            name = conn.scalar(
                sa.text(
                    "SELECT application_name FROM pg_stat_activity WHERE query = 'COMMIT'"
                    " AND wait_event = 'PgSleep' AND application_name LIKE 'sealgate-worker-%'"
                )
            )
        if name:
            return str(name)
        assert time.monotonic() < deadline, "the worker never reached its COMMIT"
        time.sleep(0.02)


def test_a_worker_killed_during_its_commit_is_answered_once_that_commit_is_over(
    runtime: Runtime,
    mail_users: dict[str, str],
    worker_env: dict[str, str],
    loop_thread: LoopThread,
) -> None:
    """PostgreSQL carries on with a COMMIT whose client died, and would make it visible
    after serve had looked and answered 451. Serve ends the dead worker's session
    first: here the COMMIT is cut short, rolled back, and the answer 451 is right."""
    if runtime.engine.dialect.name != "postgresql":
        pytest.skip("SQLite commits in the worker's own process, over when it is")
    with runtime.engine.begin() as conn:
        for statement in _SLOW_COMMIT:
            conn.execute(sa.text(statement))
    pool = WorkerPool(runtime.settings.data_dir, 1, max_group=8, sessions=runtime.sessions)
    try:
        loop_thread.run(pool.start())
        [worker] = pool.pids()
        job = _job(_account_id(runtime, ALICE), 1, "slow commit")
        answer = asyncio.run_coroutine_threadsafe(pool.run(job), loop_thread.loop)
        session_name = _session_in_commit(runtime)
        os.kill(worker, signal.SIGKILL)
        with pytest.raises(WorkerLost):
            answer.result(60)
        with runtime.engine.connect() as conn:
            left = conn.scalar(
                sa.text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :n"),
                {"n": session_name},
            )
        assert left == 0, "serve answered while the dead worker's COMMIT could still finish"
        with db.read_only(runtime.sessions) as session:
            assert maillog.handled(session, [job.queue_id]) == {}
        assert queue_ids_in_mailbox(runtime, BOB) == []
    finally:
        loop_thread.run(pool.close())
        with runtime.engine.begin() as conn:
            for statement in _NO_SLOW_COMMIT:
                conn.execute(sa.text(statement))


def _submission(n: int, account_id: int) -> Submission:
    return Submission(
        sender=Sender(account_id=account_id, address=ALICE),
        envelope_from=ALICE,
        recipients=[BOB],
        raw=message(n),
        client=ClientInfo(helo="client.example", ip="127.0.0.1", protocol="ESMTPSA"),
        received_at=utcnow(),
    )


def _account_id(runtime: Runtime, address: str) -> int:
    with db.read_only(runtime.sessions) as session:
        found = accounts.find_address(session, address)
        assert found is not None
        return found.account_id


def test_one_failing_message_in_a_group_leaves_the_others_committed(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    alice = _account_id(runtime, ALICE)
    group = [_submission(n, alice) for n in range(3)]
    for submission in group:
        prepare(runtime, submission)
    # The middle one stores its copy to Bob, then fails on an address that is gone:
    # its savepoint takes back what it had written, the others commit.
    group[1].copies.append(Copy("mailbox", ["gone@example.test"], b"Subject: x\r\n\r\nx\r\n"))
    outcomes = groupcommit.store_group(runtime.sessions, group)
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], RejectMessage)
    assert sorted(queue_ids_in_mailbox(runtime, BOB)) == sorted(
        [group[0].queue_id, group[2].queue_id]
    )


def test_threads_submitting_at_once_each_commit_once(
    runtime: Runtime, mail_users: dict[str, str]
) -> None:
    alice = _account_id(runtime, ALICE)
    start = threading.Barrier(8)
    queued: list[str] = []
    errors: list[BaseException] = []

    def one(n: int) -> None:
        try:
            start.wait(30)
            queued.append(submit(runtime, _submission(n, alice)))
        except BaseException as exc:  # noqa: BLE001  (re-raised in the test thread)
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert sorted(queue_ids_in_mailbox(runtime, BOB)) == sorted(queued)
    assert len(set(queued)) == 8


def _job(account_id: int, n: int, log_id: str) -> Job:
    return Job(
        account_id=account_id,
        sender=ALICE,
        envelope_from=ALICE,
        recipients=(BOB,),
        raw=message(n),
        client=ClientInfo(helo="client.example", ip="127.0.0.1", protocol="ESMTPSA"),
        received_at=utcnow(),
        log_id=log_id,
    )


def test_a_batch_that_fails_answers_its_messages_451_and_the_worker_stays(
    runtime: Runtime,
    mail_users: dict[str, str],
    worker_env: dict[str, str],
    loop_thread: LoopThread,
) -> None:
    pool = WorkerPool(
        runtime.settings.data_dir, 1, max_group=8, batch=raise_on_boom, sessions=runtime.sessions
    )
    loop_thread.run(pool.start())
    try:
        workers = pool.pids()
        alice = _account_id(runtime, ALICE)
        with pytest.raises(WorkerLost):
            loop_thread.run(pool.run(_job(alice, 1, BOOM)))
        outcome = loop_thread.run(pool.run(_job(alice, 2, "fine")))
        assert outcome is not None and outcome.queue_id
        assert queue_ids_in_mailbox(runtime, BOB) == [outcome.queue_id]
        assert pool.pids() == workers and pool.restarts == 0
    finally:
        loop_thread.run(pool.close())
    assert wait_gone(workers) == []


def test_workers_that_cannot_start_fail_the_start_with_a_message(
    runtime: Runtime, worker_env: dict[str, str], loop_thread: LoopThread, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "sealgate.toml").write_text("[smtp\n")  # a worker cannot load its settings
    pool = WorkerPool(broken, 2, max_group=8, sessions=runtime.sessions)
    with pytest.raises(RuntimeError, match="could not start"):
        loop_thread.run(pool.start())
    loop_thread.run(pool.close())
    assert pool.pids() == []


def test_a_worker_whose_database_connection_died_answers_451_once_then_stores(
    runtime: Runtime,
    mail_users: dict[str, str],
    worker_env: dict[str, str],
    loop_thread: LoopThread,
    client_ssl_context: ssl.SSLContext,
) -> None:
    """Workers do not ping a pooled connection before each transaction (a round trip
    per message): a connection PostgreSQL dropped costs one message a 451, never a
    loss or a duplicate, and the next message finds the pool renewed."""
    if runtime.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no server connection to lose")
    pool = WorkerPool(runtime.settings.data_dir, 1, max_group=8, sessions=runtime.sessions)
    with (
        pool_server(runtime, loop_thread, pool) as server,
        smtplib.SMTP("127.0.0.1", server.submission_port, timeout=60) as smtp,
    ):
        smtp.starttls(context=client_ssl_context)
        smtp.login(ALICE, mail_users[ALICE])

        def send(n: int) -> tuple[int, bytes]:
            smtp.mail(ALICE)
            smtp.rcpt(BOB)
            code, reply = smtp.data(message(n))
            if code != 250:
                smtp.rset()
            return code, reply

        acked = [send(0)]
        with runtime.engine.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        replies = [send(n) for n in range(1, 6)]
        assert [code for code, _ in replies].count(451) <= 1
        assert all(code == 250 for code, _ in replies[1:])
        acked += [(code, reply) for code, reply in replies if code == 250]
    queue_ids = [reply.decode().rsplit(" ", 1)[1] for _code, reply in acked]
    assert sorted(queue_ids_in_mailbox(runtime, BOB)) == sorted(queue_ids)


@pytest.mark.parametrize(("backlog", "same_worker"), [(2, True), (1, False)])
def test_a_second_worker_is_woken_only_for_a_backlog(
    runtime: Runtime,
    worker_env: dict[str, str],
    loop_thread: LoopThread,
    backlog: int,
    same_worker: bool,
) -> None:
    pool = WorkerPool(
        runtime.settings.data_dir,
        2,
        max_group=8,
        backlog=backlog,
        batch=worker_pid_after_pause,
        sessions=runtime.sessions,
    )
    loop_thread.run(pool.start())

    async def slow_then_one() -> tuple[str, str]:
        slow = asyncio.ensure_future(pool.run(_job(1, 1, SLOW)))
        await asyncio.sleep(0.2)  # the slow job is with a worker
        quick = await pool.run(_job(1, 2, "quick"))
        first = await slow
        assert first is not None and quick is not None
        return first.queue_id, quick.queue_id

    try:
        slow_pid, quick_pid = loop_thread.run(slow_then_one())
    finally:
        loop_thread.run(pool.close())
    # A lone message waits for the busy worker (one group, one commit) unless the
    # backlog is 1; the pause makes a wrong turn show.
    assert (slow_pid == quick_pid) is same_worker


@pytest.mark.parametrize(
    ("prepare_ms", "same_worker"),
    [(0.2, True), (0.6, False)],  # measured: a plain and an encrypted 10 KiB message
)
def test_waiting_messages_go_to_a_second_worker_only_when_their_prepare_outweighs_a_commit(
    runtime: Runtime,
    worker_env: dict[str, str],
    loop_thread: LoopThread,
    prepare_ms: float,
    same_worker: bool,
) -> None:
    pool = WorkerPool(
        runtime.settings.data_dir,
        2,
        max_group=8,
        backlog=2,
        batch=worker_pid_after_pause,
        sessions=runtime.sessions,
    )
    loop_thread.run(pool.start())
    pool.costs.prepare, pool.costs.store = prepare_ms / 1000, 0.7 / 1000  # a group's store

    async def slow_then_two() -> tuple[str, set[str]]:
        slow = asyncio.ensure_future(pool.run(_job(1, 1, SLOW)))
        await asyncio.sleep(0.2)  # the slow job is with a worker
        quick = await asyncio.gather(pool.run(_job(1, 2, "quick")), pool.run(_job(1, 3, "quick")))
        first = await slow
        assert first is not None and all(q is not None for q in quick)
        return first.queue_id, {q.queue_id for q in quick if q is not None}

    try:
        slow_pid, quick_pids = loop_thread.run(slow_then_two())
    finally:
        loop_thread.run(pool.close())
    # Two waiting messages that cost 2 x 0.2 ms to prepare wait for the busy worker's
    # next commit (0.7 ms saved); at 2 x 0.6 ms they go to the idle worker at once.
    assert len(quick_pids) == 1, "the two waiting messages travel as one group"
    assert (quick_pids == {slow_pid}) is same_worker


def test_the_costs_are_running_averages_of_what_the_workers_report() -> None:
    costs = _Costs()
    assert costs.worth_a_commit(1), "before any report, the backlog alone decides"
    costs.learn([None, Outcome(reject="550 no")])  # nothing stored: nothing learned
    assert costs.prepare is None and costs.store is None
    group = [
        Outcome(queue_id="a", prepare_seconds=0.0002, store_seconds=0.0006),
        Outcome(queue_id="b", prepare_seconds=0.0004, store_seconds=0.0006),
    ]
    costs.learn(group)
    assert costs.prepare == pytest.approx(0.0003) and costs.store == pytest.approx(0.0006)
    assert not costs.worth_a_commit(1) and costs.worth_a_commit(2)
    for _ in range(100):  # the messages turned costly (encrypted): the average follows
        costs.learn([Outcome(queue_id="c", prepare_seconds=0.0012, store_seconds=0.0006)])
    assert costs.prepare == pytest.approx(0.0012, rel=0.01)
    assert costs.worth_a_commit(1)
