"""The relay and the background loops while the database is away, and after.

Found by an operations probe of a running `serve` (2026-12-06): with the database
unreachable the relay logged an error at every sweep (every `[relay] poll_interval`,
a second by default), and the purge loops one per attempt. Now the outage is said once
(gateway.outages), the loops keep trying, and mail queued once the database is back
leaves without anyone restarting anything.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random

import pytest

from gateway import outages
from gateway.relay import run_relay
from gateway.runtime import Runtime
from tests.conftest import TEST_DATABASE_URL
from tests.fakes.smarthost import FakeSmarthost
from tests.gateway.outage_support import capture, outage_lines, sqlite_file_unavailable, tracebacks
from tests.gateway.test_relay import RAW, enqueue, rows, with_relay


class CountingWatch(outages.Watch):
    def __init__(self) -> None:
        super().__init__()
        self.failures = 0

    def failed(self, outage: outages.Outage) -> None:
        self.failures += 1
        super().failed(outage)


@pytest.mark.skipif(bool(TEST_DATABASE_URL), reason="the SQLite file is taken away")
def test_relay_says_a_database_outage_once_and_sends_when_it_ends(
    runtime: Runtime,
    smarthost: FakeSmarthost,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    capture(caplog)
    watch = CountingWatch()
    monkeypatch.setattr(outages, "WATCH", watch)
    rt = with_relay(runtime, smarthost)

    async def until(condition: object, what: str) -> None:
        for _ in range(800):
            if await asyncio.to_thread(condition):  # type: ignore[arg-type]
                return
            await asyncio.sleep(0.025)
        raise AssertionError(f"never: {what}")

    async def scenario() -> None:
        stop = asyncio.Event()
        worker = asyncio.create_task(run_relay(rt, stop, rng=random.Random(1)))
        try:
            with sqlite_file_unavailable(rt):
                await until(lambda: watch.failures >= 5, "five sweeps met the outage")
            enqueue(rt, now=dt.datetime.now(dt.UTC))
            await until(lambda: not rows(rt), "the queue emptied")
        finally:
            stop.set()
            await worker

    asyncio.run(scenario())
    [message] = smarthost.messages
    assert message.content == RAW
    lines = outage_lines(caplog)
    assert len(lines) == 2, lines
    assert lines[0].startswith("outage: database unavailable (SQLITE_CANTOPEN)")
    assert lines[1].startswith("outage ended: database unavailable")
    relay_errors = [
        r.getMessage()
        for r in caplog.records
        if r.name == "gateway.relay" and r.levelname == "ERROR"
    ]
    assert relay_errors == []
    assert tracebacks(caplog) == []
