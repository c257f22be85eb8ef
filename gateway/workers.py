"""A pool of worker processes that runs the submission pipeline for the SMTP server.

The SMTP edge (TLS, aiosmtpd, AUTH) stays on the serve process's event loop;
the pipeline (MIME, OpenPGP, SQLAlchemy) is CPU work that one Python process
runs on one core at a time, so messages go to `[workers] processes` worker
processes, one per core by default.

Each worker is a `multiprocessing` process started with the "spawn" method, joined
to serve by a socket pair that serve's event loop reads and writes itself (a length,
then a pickle; one batch out, its outcomes back). An executor would put two threads
of its own in serve between the loop and each worker (a queue manager and a pipe
feeder), which took a quarter of serve's CPU per message and a wait for the GIL at
each hop. A worker that dies (killed, out of memory) closes its end of the pair:
the loop sees the end of the stream, fails the batch it held and starts a new worker
in its place. "spawn" rather than "fork": a forked child would inherit the serve
process's open database connections, TLS contexts, the event loop and the master key
ring in memory; a spawned one starts clean, and forkserver would make the forkserver,
not serve, the workers' parent (so a worker could not see serve die).

What crosses to a worker is the message itself (bytes in a pipe, never on disk)
and who sent it: the account id and address, no password, no key. Each worker
builds its own Runtime from the data directory and the environment it inherited
(`load_settings`), opens the database and the master key ring itself, and
unwraps the keys it needs itself. What comes back is the queue id, or the
refusal, and the counts /metrics needs.

Messages that wait while every worker is busy travel together as one batch, and
the worker stores the ones that pass in one group commit (gateway.groupcommit):
each gets its answer only after that commit.

A worker that dies (killed, out of memory) takes its answers with it, but it may have
committed first. So serve gives each message its queue id before it goes out, and
when a worker is lost, serve asks the database (on its own engine, in a thread) which
of the messages it held were stored: the store writes mail log entries under the
queue id in the same transaction (`maillog.handled`). Those messages get their `250`
with that queue id; the others were not committed, so their clients get `451` and
send them again, and no message is both answered `451` and stored. The success path
costs nothing more: only a lost batch is looked up. On PostgreSQL, a COMMIT the
worker sent just before it died can still be running in its database session: serve
first ends that worker's sessions (found by the application name the worker gave
them) and waits until they are gone, so what it then reads is final. On SQLite the
worker's own process commits, and serve reads once that process has ended. The serve
process carries on, and a new worker takes the dead one's place.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import secrets
import signal
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from multiprocessing import resource_tracker
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway import db, metrics, outages
from gateway.admin import maillog
from gateway.logs import LogFormat
from gateway.pipeline.context import ClientInfo, Sender, Submission, new_queue_id

log = logging.getLogger(__name__)


class WorkerLost(RuntimeError):
    """The worker process running this message ended before it answered."""


@dataclass(frozen=True)
class Job:
    """One SMTP message for a worker: the data and the authenticated sender, no secret."""

    account_id: int
    sender: str
    envelope_from: str
    recipients: tuple[str, ...]
    raw: bytes = field(repr=False)
    client: ClientInfo
    received_at: dt.datetime
    log_id: str
    # Chosen by serve, not by the worker: if the worker dies before it answers, serve
    # can still ask the database whether this message was committed (`_settle`).
    queue_id: str = field(default_factory=new_queue_id)

    def submission(self) -> Submission:
        return Submission(
            sender=Sender(account_id=self.account_id, address=self.sender),
            envelope_from=self.envelope_from,
            recipients=list(self.recipients),
            raw=self.raw,
            client=self.client,
            received_at=self.received_at,
            queue_id=self.queue_id,
        )


@dataclass(frozen=True)
class Outcome:
    """What became of one job: queued (queue id), refused (SMTP reply) or failed (451)."""

    queue_id: str = ""
    reject: str = ""
    methods: tuple[str, ...] = ()
    recipients: int = 0
    encrypted: bool = False
    seconds: float = 0.0
    # What the worker's CPU went to, for serve's dispatch: this message's pipeline up
    # to the store, and the store (one commit) of the group it was in.
    prepare_seconds: float = 0.0
    store_seconds: float = 0.0
    # Stored, but its worker died before it answered: serve found it in the database
    # (the methods are read there too; nothing was timed).
    recovered: bool = False
    # Met an outage (gateway.outages), logged in the worker: serve answers 451 or 452.
    outage: outages.Outage | None = None


# --- in the worker process -------------------------------------------------------------

_runtime: object = None
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _init_worker(data_dir: str, log_level: int, log_format: LogFormat, name: str) -> None:
    """Runs once in each new worker: its own settings, logging, database and ring.

    `name` (unique to this worker) names its database sessions, for serve to find
    should this worker die (`_end_sessions`)."""
    # Ctrl-C and SIGTERM reach the whole process group; serve decides when work stops
    # (it finishes what is in flight, then shuts the pool down).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # blocked by `_spawn`
    _exit_with_parent()
    from gateway import logs
    from gateway.runtime import Runtime
    from gateway.settings import load_settings

    logs.configure(log_level, log_format)
    global _runtime
    # No ping before each transaction (see db.create_engine): a dead connection fails
    # its message before the commit, and the client sends it again.
    _runtime = Runtime.open(load_settings(data_dir), pre_ping=False, application_name=name)


def _exit_with_parent() -> None:
    """A worker whose serve process is gone (SIGKILL) must not linger: nobody waits
    for its answer, and on SQLite it would keep the database busy."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    sentinel = parent.sentinel

    def watch() -> None:
        multiprocessing.connection.wait([sentinel])
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


# A frame: its length, then a pickle. Length 0 asks a worker to stop.
_LENGTH = struct.Struct("!Q")
_READY = b"ready"


def _worker_main(
    channel: socket.socket,
    initargs: tuple[str, int, LogFormat],
    name: str,
    batch: Callable[[Sequence[Job]], list[Outcome | None]],
) -> None:
    """A worker's life: set up, say so, then one batch at a time until told to stop."""
    _init_worker(*initargs, name)
    channel.setblocking(True)
    _send_frame(channel, _READY)
    while True:
        header = _receive_exactly(channel, _LENGTH.size)
        if not header:
            return  # serve is gone
        (length,) = _LENGTH.unpack(header)
        if length == 0:
            return
        jobs = pickle.loads(_receive_exactly(channel, length))  # noqa: S301  (from serve, over our own socket pair)
        try:
            outcomes: list[Outcome | None] | None = batch(jobs)
        except Exception as exc:
            if outages.report(exc) is None:
                log.exception("a worker batch failed")
            outcomes = None  # serve answers every message of it 451
        del jobs
        _send_frame(channel, pickle.dumps(outcomes, protocol=pickle.HIGHEST_PROTOCOL))


def _send_frame(channel: socket.socket, payload: bytes) -> None:
    channel.sendall(_LENGTH.pack(len(payload)))
    channel.sendall(payload)


def _receive_exactly(channel: socket.socket, length: int) -> bytearray:
    """`length` bytes, or fewer only at the end of the stream."""
    buffer = bytearray(length)
    view, got = memoryview(buffer), 0
    while got < length:
        n = channel.recv_into(view[got:])
        if n == 0:
            return buffer[:got]
        got += n
    return buffer


def run_batch(jobs: Sequence[Job]) -> list[Outcome | None]:
    """Prepare each job, store the prepared ones in one group commit.

    None for a job stands for "failed, answer 451": the reason is logged here, in
    the worker, so no error text (which may quote data) travels back.
    """
    from gateway import groupcommit, logs
    from gateway.pipeline import RejectMessage, log_queued, prepare
    from gateway.runtime import Runtime

    runtime = _runtime
    assert isinstance(runtime, Runtime)
    outcomes: list[Outcome | None] = [None] * len(jobs)
    prepared: list[tuple[int, Submission, float, float]] = []
    for index, job in enumerate(jobs):
        started, cpu = time.monotonic(), time.thread_time()
        submission = job.submission()
        with logs.event_id(job.log_id):
            try:
                prepare(runtime, submission)
            except RejectMessage as reject:
                outcomes[index] = Outcome(reject=reject.status)
            except Exception as exc:
                outage = outages.report(exc)
                if outage is not None:
                    outcomes[index] = Outcome(outage=outage)
                else:
                    log.exception("the pipeline failed on a message from %s", job.sender)
            else:
                prepared.append((index, submission, started, time.thread_time() - cpu))
    cpu = time.thread_time()
    results = groupcommit.store_group(runtime.sessions, [p[1] for p in prepared])
    stored = time.thread_time() - cpu
    for (index, submission, started, preparing), error in zip(prepared, results, strict=True):
        with logs.event_id(jobs[index].log_id):
            if isinstance(error, RejectMessage):
                outcomes[index] = Outcome(reject=error.status)
            elif error is not None and (outage := outages.report(error)) is not None:
                outcomes[index] = Outcome(outage=outage)
            elif error is not None:
                log.error(
                    "storing a message from %s failed", submission.sender.address, exc_info=error
                )
            else:
                log_queued(submission)
                outcomes[index] = Outcome(
                    queue_id=submission.queue_id,
                    methods=tuple(h.method for h in submission.handling),
                    recipients=len(submission.recipients),
                    encrypted=metrics.encrypted_here(submission),
                    seconds=time.monotonic() - started,
                    prepare_seconds=preparing,
                    store_seconds=stored,
                )
    return outcomes


# --- in the serve process --------------------------------------------------------------

Batch = Callable[[Sequence[Job]], list[Outcome | None]]
Waiting = tuple[Job, "asyncio.Future[Outcome | None]"]


@dataclass(eq=False)
class _Worker:
    process: BaseProcess
    channel: socket.socket
    name: str  # its database sessions' application name
    held: list[Waiting] = field(default_factory=list)  # the batch it runs now

    @property
    def busy(self) -> bool:
        return bool(self.held)


class WorkerPool:
    """Hands SMTP messages to worker processes, a batch per free worker."""

    def __init__(
        self,
        data_dir: Path,
        processes: int,
        *,
        max_group: int,
        backlog: int = 1,
        log_level: int = logging.INFO,
        log_format: LogFormat = "text",
        batch: Batch = run_batch,
        sessions: so.sessionmaker[so.Session],
    ) -> None:
        """`sessions`: serve's own database, where it looks up what a worker that died
        had stored (`_settle`)."""
        if processes < 1:
            raise ValueError("a worker pool needs at least one process")
        self.processes = processes
        self._max_group = max_group
        self._backlog = backlog
        self._initargs = (str(data_dir), log_level, log_format)
        self._batch = batch
        self._sessions = sessions
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []
        self._waiting: deque[Waiting] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.restarts = 0
        self.costs = _Costs()

    async def start(self) -> None:
        """Start every worker now (not on the first message), and fail here if one cannot.

        They start side by side: each imports the whole stack and opens the database and
        the ring, and one after the other that was most of serve's start-up (1.4 s a
        worker here). The ones that did start are kept for `close` to stop."""
        started = await asyncio.gather(*(self._spawn() for _ in range(self.processes)))
        self._workers.extend(worker for worker in started if worker is not None)
        if len(self._workers) < self.processes:
            raise RuntimeError("the worker processes could not start (see the log)")

    async def _spawn(self) -> _Worker | None:
        """A new worker, once it has opened its database and ring; None if it could not."""
        ours, theirs = socket.socketpair()
        # Random, not the pid: several gateway hosts may share one PostgreSQL.
        name = f"sealgate-worker-{secrets.token_hex(8)}"
        process = self._context.Process(
            target=_worker_main,
            args=(theirs, self._initargs, name, self._batch),
            name="sealgate-worker",
            daemon=True,
        )
        # A new worker inherits the blocked signals until `_init_worker` ignores them: a
        # stop sent to the whole group while it starts (systemd, Ctrl-C) would kill it.
        # multiprocessing starts its resource tracker on the first spawn and unblocks
        # SIGINT and SIGTERM after it, which would leave that first worker exposed: the
        # tracker is started before the signals are blocked.
        resource_tracker.ensure_running()
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            theirs.close()  # the worker has its own copy: its death ends our stream
        ours.setblocking(False)
        worker = _Worker(process, ours, name)
        if await self._receive(worker) != _READY:
            await self._end(worker)
            return None
        self._watch(worker)
        return worker

    def pids(self) -> list[int]:
        """The worker processes' ids (for tests and the shutdown check)."""
        return sorted(w.process.pid for w in self._workers if w.process.pid is not None)

    async def run(self, job: Job) -> Outcome | None:
        """The outcome of `job` (None: it failed, answer 451); WorkerLost if its worker died."""
        if self._closed:
            raise WorkerLost("the worker pool is shut down")
        future: asyncio.Future[Outcome | None] = asyncio.get_running_loop().create_future()
        self._waiting.append((job, future))
        self._dispatch()
        return await future

    def _dispatch(self) -> None:
        """Give waiting messages to free workers, but wake a second worker only when
        that pays (`_worth_another_worker`)."""
        for worker in self._workers:
            if not self._waiting:
                return
            if worker.busy:
                continue
            if any(w.busy for w in self._workers) and not self._worth_another_worker():
                return
            batch: list[Waiting] = []
            while self._waiting and len(batch) < self._max_group:
                job, future = self._waiting.popleft()
                if not future.done():  # the client may have gone
                    batch.append((job, future))
            if batch:
                worker.held = batch
                self._in_task(self._send(worker, batch))

    def _worth_another_worker(self) -> bool:
        """Whether the waiting messages should go to a free worker now, while another
        is busy, rather than wait to join that worker's next group.

        A second worker prepares them on the other core, which saves about their
        prepare CPU; but it stores them in a commit of their own, which costs a
        group's store CPU again (and on SQLite each writer process then waits for the
        write lock and finds its page cache stale after the other's commit). So: at
        least `backlog` messages, and their prepare CPU (as the workers have been
        reporting it) at least one group's store CPU. A burst of plain messages
        (cheap to prepare) then waits for one larger commit, while encrypted ones
        (Sequoia, keys) spread over the cores (docs/benchmarks.md, sixth pass)."""
        waiting = len(self._waiting)
        if waiting < self._backlog:
            return False
        return self.costs.worth_a_commit(waiting)

    def _in_task(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, worker: _Worker, batch: list[Waiting]) -> None:
        payload = pickle.dumps([job for job, _f in batch], protocol=pickle.HIGHEST_PROTOCOL)
        loop = asyncio.get_running_loop()
        try:
            await loop.sock_sendall(worker.channel, _LENGTH.pack(len(payload)))
            await loop.sock_sendall(worker.channel, payload)
        except OSError:
            pass  # it died: its watch fails the batch and replaces it

    def _watch(self, worker: _Worker) -> None:
        self._in_task(self._answers(worker))

    async def _answers(self, worker: _Worker) -> None:
        """Read `worker`'s outcomes as they come, until its stream ends."""
        while True:
            answer = await self._receive(worker)
            if answer is None:
                break
            batch, worker.held = worker.held, []
            outcomes: list[Outcome | None] | None = pickle.loads(answer)  # noqa: S301  (our worker)
            if outcomes is None:
                # The batch failed as a whole, maybe after its commit. The worker lives
                # on, so its transaction is over: what the database holds is final.
                await self._settle(batch, worker, died=False)
            else:
                self.costs.learn(outcomes)
                for (_job, future), outcome in zip(batch, outcomes, strict=True):
                    if not future.done():
                        future.set_result(outcome)
            self._dispatch()
        # Its stream ended: it died (or was told to stop, then nothing is held).
        batch, worker.held = worker.held, []
        replace = worker in self._workers and not self._closed
        if worker in self._workers:
            self._workers.remove(worker)  # no batch goes to it from here on
        await self._end(worker)
        if worker.process.exitcode is None:  # it would not end: it might still commit
            log.error("a worker process that lost its channel would not end")
            _fail(batch)
        else:  # only now: a process still alive could yet commit
            await self._settle(batch, worker, died=True)
        if not replace:
            return
        log.error("a worker process ended unexpectedly; starting a new one")
        self.restarts += 1
        replacement = await self._spawn()
        if replacement is None:
            log.error("no new worker process could start; %d left", len(self._workers))
        elif self._closed:
            await self._stop(replacement)
            return
        else:
            self._workers.append(replacement)
        if not self._workers:
            _fail(list(self._waiting))
            self._waiting.clear()
        self._dispatch()

    async def _settle(self, batch: list[Waiting], worker: _Worker, *, died: bool) -> None:
        """Answer the messages of a batch `worker` gave no outcomes for: as queued
        those the database holds, WorkerLost (451) the others.

        `died`: its process has ended (its PostgreSQL sessions are ended before the
        lookup); else it is alive and answered that the batch failed as a whole, after
        its transaction was over. Should the lookup itself fail, every message gets
        451: the client may send a stored one again, but none is lost."""
        waiting = [(job, future) for job, future in batch if not future.done()]
        if not waiting:
            return
        found: dict[str, tuple[str, ...]] = {}
        try:
            found = await asyncio.to_thread(
                committed,
                self._sessions,
                [job.queue_id for job, _future in waiting],
                ended=worker.name if died else None,
            )
        except Exception:
            log.exception("could not look up what a lost worker batch had stored")
        if found:
            log.warning(
                "%d of the %d messages of a lost worker batch were stored: answered as queued",
                len(found),
                len(waiting),
            )
        for job, future in waiting:
            methods = found.get(job.queue_id)
            if future.done():  # the client went meanwhile
                continue
            if methods is None:
                future.set_exception(WorkerLost("the worker process ended"))
            else:
                future.set_result(
                    Outcome(
                        queue_id=job.queue_id,
                        methods=methods,
                        recipients=len(methods),
                        encrypted=any(m in metrics.ENCRYPTING for m in methods),
                        recovered=True,
                    )
                )

    async def _receive(self, worker: _Worker) -> bytes | None:
        """One frame from `worker`, or None at the end of its stream."""
        loop = asyncio.get_running_loop()
        try:
            header = await _read_exactly(loop, worker.channel, _LENGTH.size)
            if header is None:
                return None
            (length,) = _LENGTH.unpack(header)
            return await _read_exactly(loop, worker.channel, length)
        except OSError:
            return None

    async def _end(self, worker: _Worker) -> None:
        worker.channel.close()
        await asyncio.to_thread(worker.process.join, 10)
        if worker.process.is_alive():
            with contextlib.suppress(ProcessLookupError):
                worker.process.kill()
            await asyncio.to_thread(worker.process.join, 10)

    async def close(self, grace: float = 60.0) -> None:
        """Finish what was handed out (for up to `grace` seconds), then stop every worker
        and wait for it to exit. A worker still busy after that is killed: its messages
        are answered as any lost worker's (`_settle`), as queued those it had committed,
        451 the others (their clients send them again)."""
        self._closed = True
        deadline = time.monotonic() + grace
        while self._busy() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self._busy():
            log.warning("worker processes still busy after %.0f s; stopping them", grace)
        for worker in self._workers:
            await self._stop(worker)
        # A replacement for a worker that died just before may still be starting: its
        # watch task is made once it is up (and stopped at once, the pool being closed).
        while self._tasks:
            done, _pending = await asyncio.wait(list(self._tasks))
            for task in done:
                with contextlib.suppress(asyncio.CancelledError):
                    task.result()
        _fail(list(self._waiting))
        self._waiting.clear()

    async def _stop(self, worker: _Worker) -> None:
        """Ask an idle worker to stop; kill a busy one (its watch settles its batch)."""
        if worker.busy:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.process.pid or 0, signal.SIGKILL)
            return
        with contextlib.suppress(OSError):
            await asyncio.get_running_loop().sock_sendall(worker.channel, _LENGTH.pack(0))

    def _busy(self) -> bool:
        return bool(self._waiting) or any(w.busy for w in self._workers)


class _Costs:
    """Running averages of the CPU the workers report: one message's prepare, one
    group's store. Unknown until the first group has been stored."""

    WEIGHT = 0.1  # of each new batch: a few dozen batches make the average

    def __init__(self) -> None:
        self.prepare: float | None = None
        self.store: float | None = None

    def learn(self, outcomes: Sequence[Outcome | None]) -> None:
        timed = [o for o in outcomes if o is not None and o.store_seconds > 0]
        if not timed:
            return
        prepare = sum(o.prepare_seconds for o in timed) / len(timed)
        self.prepare = self._blend(self.prepare, prepare)
        self.store = self._blend(self.store, timed[0].store_seconds)

    def _blend(self, average: float | None, value: float) -> float:
        return value if average is None else average + self.WEIGHT * (value - average)

    def worth_a_commit(self, messages: int) -> bool:
        if self.prepare is None or self.store is None:
            return True
        return messages * self.prepare >= self.store


async def _read_exactly(
    loop: asyncio.AbstractEventLoop, channel: socket.socket, length: int
) -> bytes | None:
    if length == 0:
        return b""
    buffer = bytearray(length)
    view, got = memoryview(buffer), 0
    while got < length:
        n = await loop.sock_recv_into(channel, view[got:])
        if n == 0:
            return None
        got += n
    return bytes(buffer)


def _fail(batch: list[Waiting]) -> None:
    for _job, future in batch:
        if not future.done():
            future.set_exception(WorkerLost("the worker process ended"))


# The longest serve waits for PostgreSQL to end a dead worker's session (a COMMIT under
# way finishes first: an fsync, or a synchronous standby's answer).
SESSION_END_WAIT = dt.timedelta(seconds=10)
_END_SESSIONS = sa.text(
    "SELECT pg_terminate_backend(pid, :wait_ms) FROM pg_stat_activity"
    " WHERE application_name = :name"
)
_SESSIONS_LEFT = sa.text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name")


class SessionsLeft(RuntimeError):
    """A dead worker's database session did not end: what it holds is not final yet."""


def committed(
    sessions: so.sessionmaker[so.Session], queue_ids: Collection[str], *, ended: str | None
) -> dict[str, tuple[str, ...]]:
    """Which of `queue_ids` are stored, each with its recipients' handlings. Blocking.

    `ended`: the application name of a worker that died; on PostgreSQL its sessions
    are ended first (SessionsLeft if one would not end).
    """
    if ended is not None:
        _end_sessions(sessions, ended)
    with db.read_only(sessions) as session:
        return maillog.handled(session, queue_ids)


def _end_sessions(sessions: so.sessionmaker[so.Session], name: str) -> None:
    """End the PostgreSQL sessions named `name` and wait until they are gone.

    The worker may have died just after it sent a COMMIT: the session goes on with
    it (PostgreSQL sees the client gone only when it answers), and the transaction
    becomes visible some milliseconds later. Ended, a session's transaction is
    committed or rolled back for good (pg_terminate_backend waits for that)."""
    with db.read_only(sessions) as session:
        if session.get_bind().dialect.name != "postgresql":
            return  # SQLite: the worker's own process committed, and it has ended
        wait_ms = int(SESSION_END_WAIT.total_seconds() * 1000)
        session.execute(_END_SESSIONS, {"wait_ms": wait_ms, "name": name})
    # A transaction reads pg_stat_activity once: a new one sees the sessions gone.
    with db.read_only(sessions) as session:
        left = session.scalar(_SESSIONS_LEFT, {"name": name})
    if left:
        raise SessionsLeft(f"{left} database session(s) of a dead worker did not end")
