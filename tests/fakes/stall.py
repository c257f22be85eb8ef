"""Worker batches for tests: one that hangs on its first call, so a test can kill the
worker mid-message; ones whose worker dies on its first batch, before or after the
commit; one that waits for the test; and one that fails.

It runs in a worker process (gateway.workers, spawn start method), which imports it
by name; the directory it reports to comes from the environment it inherited.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from gateway.workers import Job, Outcome, run_batch

STALL_DIR_ENV = "SEALGATE_TEST_STALL_DIR"
PID_FILE = "stalled-worker.pid"


def stall_first_batch(jobs: Sequence[Job]) -> list[Outcome | None]:
    """The first batch any worker gets: write this worker's pid and wait to be killed."""
    pid_file = Path(os.environ[STALL_DIR_ENV]) / PID_FILE
    try:
        with pid_file.open("x") as out:  # exactly one worker, once
            out.write(str(os.getpid()))
    except FileExistsError:
        return run_batch(jobs)
    time.sleep(600)
    raise AssertionError("the test did not kill the stalled worker")


BOOM = "boom"


def raise_on_boom(jobs: Sequence[Job]) -> list[Outcome | None]:
    """A batch with a job whose log id is "boom" fails as a whole (an unexpected error)."""
    if any(job.log_id == BOOM for job in jobs):
        raise RuntimeError("a batch that fails")
    return run_batch(jobs)


SLOW = "slow"


def worker_pid_after_pause(jobs: Sequence[Job]) -> list[Outcome | None]:
    """Stores nothing: answers each job with the worker's pid, after a pause for a job
    whose log id is "slow" (so a test can see which worker took which job)."""
    if any(job.log_id == SLOW for job in jobs):
        time.sleep(1.0)
    return [Outcome(queue_id=str(os.getpid())) for _job in jobs]


FIRST_BATCH = "first-batch"


def _first_batch() -> bool:
    """True for the first batch any worker of this test gets, exactly once."""
    try:
        (Path(os.environ[STALL_DIR_ENV]) / FIRST_BATCH).open("x").close()
    except FileExistsError:
        return False
    return True


def _die() -> None:
    """End this worker as the kernel would (SIGKILL, the OOM killer): no cleanup, no answer."""
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("a SIGKILLed process went on")


def die_after_commit(jobs: Sequence[Job]) -> list[Outcome | None]:
    """The first batch is prepared and committed by the real pipeline, then its worker
    dies before it answers; later batches run as usual."""
    outcomes = run_batch(jobs)
    if _first_batch():
        _die()
    return outcomes


def die_before_commit(jobs: Sequence[Job]) -> list[Outcome | None]:
    """The first batch's worker dies before it stores anything; later batches run as usual."""
    if _first_batch():
        _die()
    return run_batch(jobs)


GATE = "gate"
GATE_FIFO = "gate.fifo"


def gate_then_die_after_commit(jobs: Sequence[Job]) -> list[Outcome | None]:
    """A batch with a job whose log id is "gate" waits until the test writes to the FIFO
    (so the jobs sent meanwhile travel as the next batch) and stores nothing; the next
    batch is stored by the real pipeline, then its worker dies before it answers."""
    if any(job.log_id == GATE for job in jobs):
        with (Path(os.environ[STALL_DIR_ENV]) / GATE_FIFO).open("rb") as fifo:
            fifo.read()
        return [Outcome(queue_id=job.queue_id) for job in jobs]
    return die_after_commit(jobs)
