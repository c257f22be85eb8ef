"""cProfile in every thread of a Python process, counting CPU time, for bench/profile_serve.py.

Python imports `sitecustomize` at start-up from the path; bench/profile_serve.py puts
this directory on PYTHONPATH of `sealgate serve` only, with SEALGATE_BENCH_PROFILE_DIR
set, so serve and any Python process it starts (a spawned worker pool, for example)
profile themselves; without the variable this module does nothing. Each thread gets
its own profiler timed by time.thread_time (the thread's CPU, not its waits), since
cProfile sees one thread only. SIGUSR1 marks the start of the measured window (a
snapshot is taken and later subtracted), so start-up and warm-up stay out. At exit the
window's statistics are written, in pstats format, as DIR/<pid>-main.prof (the main
thread: the event loop) and DIR/<pid>-threads.prof (all other threads).
"""

from __future__ import annotations

import os
from typing import Any

Stats = dict[Any, Any]  # pstats' raw form: func -> (cc, nc, tt, ct, callers)
PROFILE_DIR = os.environ.get("SEALGATE_BENCH_PROFILE_DIR")


def _install(out: str) -> None:
    import atexit
    import cProfile
    import marshal
    import pstats
    import signal
    import threading
    import time
    from pathlib import Path

    main = cProfile.Profile(time.thread_time)
    others: list[cProfile.Profile] = []
    lock = threading.Lock()
    start: dict[str, Stats] = {"main": {}, "threads": {}}

    def merged(profilers: list[cProfile.Profile]) -> Stats:
        total: Stats = {}
        for profiler in profilers:
            profiler.snapshot_stats()  # reads without disabling (create_stats would)
            for func, (cc, nc, tt, ct, callers) in profiler.stats.items():  # type: ignore[attr-defined]
                if func in total:
                    total[func] = pstats.add_func_stats(total[func], (cc, nc, tt, ct, callers))
                else:
                    total[func] = (cc, nc, tt, ct, dict(callers))
        return total

    def minus(now: Stats, before: Stats) -> Stats:
        result: Stats = {}
        for func, (cc, nc, tt, ct, callers) in now.items():
            if func not in before:
                result[func] = (cc, nc, tt, ct, callers)
                continue
            bcc, bnc, btt, bct, bcallers = before[func]
            if nc == bnc:
                continue  # nothing in the window
            edges = {}
            for caller, edge in callers.items():
                old = bcallers.get(caller)
                if old is None:
                    edges[caller] = edge
                elif isinstance(edge, tuple):
                    diff = tuple(a - b for a, b in zip(edge, old, strict=True))
                    if diff[1] > 0:
                        edges[caller] = diff
                elif edge - old > 0:
                    edges[caller] = edge - old
            result[func] = (cc - bcc, nc - bnc, tt - btt, ct - bct, edges)
        return result

    def snapshot() -> dict[str, Stats]:
        with lock:
            threads = list(others)
        return {"main": merged([main]), "threads": merged(threads)}

    def mark(*_args: object) -> None:
        main.disable()  # the snapshot's own work stays out of the window
        start.update(snapshot())
        main.enable()

    def dump() -> None:
        main.disable()
        final = snapshot()
        for part, stats in final.items():
            window = minus(stats, start[part])
            if not window:  # pstats cannot load an empty file: write none
                continue
            with open(Path(out) / f"{os.getpid()}-{part}.prof", "wb") as f:
                marshal.dump(window, f)

    original_run = threading.Thread.run

    def run(self: threading.Thread) -> None:
        profiler = cProfile.Profile(time.thread_time)
        with lock:
            others.append(profiler)
        profiler.enable()
        try:
            original_run(self)
        finally:
            profiler.disable()

    threading.Thread.run = run  # type: ignore[method-assign]
    signal.signal(signal.SIGUSR1, mark)
    atexit.register(dump)
    Path(out, f"{os.getpid()}.armed").touch()
    main.enable()


if PROFILE_DIR:
    _install(PROFILE_DIR)
