"""A pool of worker processes that runs the submission pipeline for the SMTP server.

The SMTP edge (TLS, aiosmtpd, AUTH) stays on the serve process's event loop;
the pipeline (MIME, OpenPGP, SQLAlchemy) is CPU work that one Python process
runs on one core at a time, so messages go to `[workers] processes` worker
processes, one per core by default.

Built on `concurrent.futures.ProcessPoolExecutor` with the "spawn" start method:
the standard library already does the framing, the result routing and the
detection of a worker that died (every future it held fails with
`BrokenProcessPool`), which hand-written pipes would have to get right again.
"spawn" rather than "fork": a forked child would inherit the serve process's
open database connections, TLS contexts, the event loop and the master key ring
in memory; a spawned one starts clean, and forkserver would make the forkserver,
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

A worker that dies (killed, out of memory) fails the messages it held before
their commit, so their clients were not answered `250`: they get `451` and send
again. The executor is then replaced by a fresh one; the serve process carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from gateway.logs import LogFormat
from gateway.pipeline.context import ClientInfo, Sender, Submission

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

    def submission(self) -> Submission:
        return Submission(
            sender=Sender(account_id=self.account_id, address=self.sender),
            envelope_from=self.envelope_from,
            recipients=list(self.recipients),
            raw=self.raw,
            client=self.client,
            received_at=self.received_at,
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


# --- in the worker process -------------------------------------------------------------

_runtime: object = None


def _init_worker(data_dir: str, log_level: int, log_format: LogFormat) -> None:
    """Runs once in each new worker: its own settings, logging, database and ring."""
    # Ctrl-C and SIGTERM reach the whole process group; serve decides when work stops
    # (it finishes what is in flight, then shuts the pool down).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _exit_with_parent()
    from gateway import logs
    from gateway.runtime import Runtime
    from gateway.settings import load_settings

    logs.configure(log_level, log_format)
    global _runtime
    _runtime = Runtime.open(load_settings(data_dir))


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


def ready() -> int:
    return os.getpid()


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
    prepared: list[tuple[int, Submission, float]] = []
    for index, job in enumerate(jobs):
        started = time.monotonic()
        submission = job.submission()
        with logs.event_id(job.log_id):
            try:
                prepare(runtime, submission)
            except RejectMessage as reject:
                outcomes[index] = Outcome(reject=reject.status)
            except Exception:
                log.exception("the pipeline failed on a message from %s", job.sender)
            else:
                prepared.append((index, submission, started))
    results = groupcommit.store_group(runtime.sessions, [s for _i, s, _t in prepared])
    for (index, submission, started), error in zip(prepared, results, strict=True):
        with logs.event_id(jobs[index].log_id):
            if isinstance(error, RejectMessage):
                outcomes[index] = Outcome(reject=error.status)
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
                    encrypted=any(c.encrypted for c in submission.copies),
                    seconds=time.monotonic() - started,
                )
    return outcomes


# --- in the serve process --------------------------------------------------------------

Batch = Callable[[Sequence[Job]], list[Outcome | None]]


class WorkerPool:
    """Hands SMTP messages to worker processes, a batch per free worker."""

    def __init__(
        self,
        data_dir: Path,
        processes: int,
        *,
        max_group: int,
        log_level: int = logging.INFO,
        log_format: LogFormat = "text",
        batch: Batch = run_batch,
    ) -> None:
        if processes < 1:
            raise ValueError("a worker pool needs at least one process")
        self.processes = processes
        self._max_group = max_group
        self._initargs = (str(data_dir), log_level, log_format)
        self._batch = batch
        self._context = multiprocessing.get_context("spawn")
        self._executor = self._new_executor()
        self._waiting: deque[tuple[Job, asyncio.Future[Outcome | None]]] = deque()
        self._running = 0
        self._closed = False
        self.restarts = 0

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.processes,
            mp_context=self._context,
            initializer=_init_worker,
            initargs=self._initargs,
        )

    async def start(self) -> None:
        """Start every worker now (not on the first message), and fail here if one cannot."""
        loop = asyncio.get_running_loop()
        started = [loop.run_in_executor(self._executor, ready) for _ in range(self.processes)]
        try:
            await asyncio.gather(*started)
        except BrokenProcessPool:
            raise RuntimeError("the worker processes could not start (see the log)") from None

    def pids(self) -> list[int]:
        """The worker processes' ids (for tests and the shutdown check)."""
        processes = getattr(self._executor, "_processes", None) or {}
        return sorted(processes)

    async def run(self, job: Job) -> Outcome | None:
        """The outcome of `job` (None: it failed, answer 451); WorkerLost if its worker died."""
        if self._closed:
            raise WorkerLost("the worker pool is shut down")
        future: asyncio.Future[Outcome | None] = asyncio.get_running_loop().create_future()
        self._waiting.append((job, future))
        self._dispatch()
        return await future

    def _dispatch(self) -> None:
        while self._waiting and self._running < self.processes:
            batch: list[tuple[Job, asyncio.Future[Outcome | None]]] = []
            while self._waiting and len(batch) < self._max_group:
                job, future = self._waiting.popleft()
                if not future.done():  # the client may have gone
                    batch.append((job, future))
            if not batch:
                return
            executor = self._executor
            try:
                sent = executor.submit(self._batch, [job for job, _f in batch])
            except BrokenProcessPool:
                self._replace(executor)
                self._fail(batch)
                continue
            self._running += 1
            sent.add_done_callback(self._on_done(asyncio.get_running_loop(), executor, batch))

    def _on_done(
        self,
        loop: asyncio.AbstractEventLoop,
        executor: ProcessPoolExecutor,
        batch: list[tuple[Job, asyncio.Future[Outcome | None]]],
    ) -> Callable[[Future[list[Outcome | None]]], None]:
        """The executor calls back in its own thread; the outcome is handled on the loop."""

        def done(sent: Future[list[Outcome | None]]) -> None:
            loop.call_soon_threadsafe(self._finished, executor, batch, sent)

        return done

    def _finished(
        self,
        executor: ProcessPoolExecutor,
        batch: list[tuple[Job, asyncio.Future[Outcome | None]]],
        done: Future[list[Outcome | None]],
    ) -> None:
        self._running -= 1
        error = done.exception()
        if error is None:
            for (_job, future), outcome in zip(batch, done.result(), strict=True):
                if not future.done():
                    future.set_result(outcome)
        else:
            if isinstance(error, BrokenProcessPool):
                self._replace(executor)
            else:
                log.error("a worker batch failed", exc_info=error)
            self._fail(batch)
        self._dispatch()

    def _fail(self, batch: list[tuple[Job, asyncio.Future[Outcome | None]]]) -> None:
        for _job, future in batch:
            if not future.done():
                future.set_exception(WorkerLost("the worker process ended"))

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        """A worker died: start a fresh pool (once per broken one) unless shutting down."""
        if broken is not self._executor or self._closed:
            return
        log.error("a worker process ended unexpectedly; starting new workers")
        self.restarts += 1
        self._executor = self._new_executor()
        broken.shutdown(wait=False, cancel_futures=True)

    async def close(self, grace: float = 60.0) -> None:
        """Finish what was handed out (for up to `grace` seconds), then stop every worker
        and wait for it to exit. A worker still busy after that is killed: its message
        was not committed, so it was not answered, and the client sends it again."""
        self._closed = True
        deadline = time.monotonic() + grace
        while (self._waiting or self._running) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self._waiting or self._running:
            log.warning("worker processes still busy after %.0f s; stopping them", grace)
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
