"""Where `sealgate serve` spends its CPU per message under load: a per-step profile.

Starts `sealgate serve` (production settings, SQLite or --database-url) with
bench/profiling/sitecustomize.py on its path: every thread of serve, and of any Python
process it starts, runs under cProfile counting that thread's CPU time. After a
warm-up, SIGUSR1 opens the window; the load is the one of bench/smtp_throughput.py
(--connections STARTTLS clients, persistent or one connection per message); SIGTERM
ends serve, which writes the window's statistics. Printed, per message:
- the CPU of the profiled threads (the event loop thread apart), and the CPU of the
  process tree from /proc for comparison (the profiler's own cost included);
- the pipeline's steps: what `gateway.pipeline.submit` calls, and the other
  per-message work outside it (AUTH, RCPT checks, the DATA hook);
- self time by library, C functions counted to the library that called them;
- the functions with the most self time.

    python bench/profile_serve.py [--kind encrypted|plain] [--messages 200] [--reconnect]
        [--connections 4] [--size 10240] [--database-url ...] [--save DIR] [--top 25]

Profiling slows the server (each call is timed): compare shares, and take absolute
throughput from bench/smtp_throughput.py.
"""

from __future__ import annotations

import argparse
import os
import pstats
import re
import shutil
import signal
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    BENCH,
    KIB,
    ROOT,
    add_recipient,
    load_average,
    log,
    run_load,
    sealgate_server,
    tree_pids,
)

Func = tuple[str, int, str]
STDLIB = Path(os.__file__).resolve().parent
PIPELINE = "gateway/pipeline/__init__.py"  # submit, and any split of it
SQL = ("sqlalchemy/engine/default.py", ("do_execute", "do_executemany", "do_execute_no_params"))
# Per-message work outside submit, by (file suffix, function).
OUTSIDE = [
    ("gateway/smtp_server.py", "_authenticate", "AUTH (_authenticate: password check)"),
    ("gateway/lookups.py", "load_destination", "RCPT: recipient lookup (cache miss)"),
    ("gateway/smtp_server.py", "handle_DATA", "DATA hook on the event loop"),
]


def library(func: Func) -> str:
    """The package a function belongs to: a site-packages distribution, sealgate's own
    package (gateway split by subpackage), or the standard-library module."""
    path = func[0]
    if path.startswith("<"):  # code made at run time, or frozen standard-library modules
        if "sqlalchemy" in path:
            return "sqlalchemy"
        return "stdlib " + path.strip("<>").split()[-1] if "frozen" in path else "generated"
    if path == "~":  # a C function: named by its module where cProfile says it
        found = re.search(r"of '([\w.]+?)\.", func[2]) or re.search(r"method (\w+)\.", func[2])
        return f"C: {found.group(1)}" if found else "C: builtins"
    parts = Path(path).parts
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1].split(".")[0]
    try:
        inside = Path(path).resolve().relative_to(ROOT).parts
    except ValueError:
        inside = ()
    if inside:
        if inside[0] == "gateway" and len(inside) > 2:
            return f"{inside[0]}.{inside[1]}"
        return inside[0].removesuffix(".py")
    try:
        return "stdlib " + Path(path).resolve().relative_to(STDLIB).parts[0].removesuffix(".py")
    except ValueError:
        return Path(path).name


def self_time_by_library(stats: dict[Func, Any]) -> dict[str, float]:
    """Self time per library; a C function's time goes to the library of each caller."""
    totals: dict[str, float] = defaultdict(float)
    for func, (_cc, _nc, tt, _ct, callers) in stats.items():
        if func[0] != "~" or not callers:
            totals[library(func)] += tt
            continue
        for caller, edge in callers.items():
            totals[library(caller)] += edge[2] if isinstance(edge, tuple) else 0.0
    return totals


def find(stats: dict[Func, Any], suffix: str, name: str) -> list[Func]:
    return [f for f in stats if f[0].endswith(suffix) and f[2] == name]


def steps(stats: dict[Func, Any]) -> list[tuple[str, float, int]]:
    """(callee, CPU seconds, calls) for what the pipeline module's functions call: `submit`
    and whatever it is split into (a worker process may run part of it)."""
    found = []
    for func, (_cc, _nc, _tt, _ct, callers) in stats.items():
        if func[0].endswith(PIPELINE):
            continue  # a helper of the same module: its own callees are counted
        for caller, edge in callers.items():
            if caller[0].endswith(PIPELINE) and isinstance(edge, tuple):
                label = f"{func[2]}  ({library(func)})"
                if func[0].endswith("contextlib.py"):  # the `with db.…(sessions)` blocks
                    label = f"db session {func[2].strip('_')} (begin, commit, close)"
                found.append((label, edge[3], edge[1]))
    return sorted(found, key=lambda row: -row[1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--kind", choices=["encrypted", "plain"], default="encrypted")
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--reconnect", action="store_true", help="one connection per message")
    parser.add_argument("--size", type=int, default=10 * KIB)
    parser.add_argument("--warm-up", type=int, default=8)
    parser.add_argument("--database-url", help="PostgreSQL (emptied first) instead of SQLite")
    parser.add_argument("--save", type=Path, help="keep the .prof files in this directory")
    parser.add_argument("--top", type=int, default=25, help="functions by self time")
    args = parser.parse_args()
    encrypt = "subject" if args.kind == "encrypted" else None

    with tempfile.TemporaryDirectory(prefix="sealgate-profile-") as tmp:
        out = Path(tmp) / "prof"
        out.mkdir()
        hook = {
            "PYTHONPATH": os.pathsep.join(
                [str(BENCH / "profiling"), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
            "SEALGATE_BENCH_PROFILE_DIR": str(out),
        }
        log("starting sealgate serve under the profiler ...")
        with sealgate_server(
            Path(tmp) / "data",
            database_url=args.database_url,
            prepare=add_recipient,
            serve_env_extra=hook,
        ) as server:
            common: dict[str, Any] = {
                "size": args.size,
                "reconnect": args.reconnect,
                "encrypt": encrypt,
            }
            run_load(
                "warm-up",
                server.starttls_port,
                server.password,
                connections=min(args.connections, args.warm_up),
                messages=args.warm_up,
                **common,
            )
            armed = [int(p.stem) for p in out.glob("*.armed")]
            for pid in tree_pids(server.pid):
                if pid in armed:
                    os.kill(pid, signal.SIGUSR1)
            time.sleep(0.5)
            log(f"profiling {args.messages} {args.kind} messages ...")
            result = run_load(
                args.kind,
                server.starttls_port,
                server.password,
                connections=args.connections,
                messages=args.messages,
                cpu_of=server.pid,
                **common,
            )
            profiled = sorted(set(tree_pids(server.pid)) & set(armed))
        files = sorted(out.glob("*.prof"))
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            for f in files:
                shutil.copy(f, args.save / f.name)
        serve_loop = out / f"{server.pid}-main.prof"  # serve's main thread runs the event loop
        report(
            args,
            result.rate,
            len(result.latencies),
            result.cpu_seconds,
            files,
            serve_loop,
            profiled,
        )
        if result.failures:
            print(f"{len(result.failures)} failed, first: {result.failures[0]}")


def report(
    args: argparse.Namespace,
    rate: float,
    messages: int,
    cpu_seconds: float | None,
    files: list[Path],
    serve_loop: Path,
    profiled: list[int],
) -> None:
    per = 1000 / max(1, messages)  # seconds in total -> ms per message
    # Worker processes' main threads run pipeline work, not an event loop.
    loop_files = [f for f in files if f == serve_loop]
    every: dict[Func, Any] = pstats.Stats(*map(str, files)).stats  # type: ignore[attr-defined]
    loop: dict[Func, Any] = (
        pstats.Stats(*map(str, loop_files)).stats  # type: ignore[attr-defined]
        if loop_files
        else {}
    )
    total = sum(row[2] for row in every.values())
    on_loop = sum(row[2] for row in loop.values())
    pattern = "one connection per message" if args.reconnect else "persistent connections"
    print(
        f"\nprofile of sealgate serve: {messages} {args.kind} messages of {args.size} bytes,"
        f" {args.connections} clients, {pattern}"
    )
    print(f"load average {load_average()}; processes profiled: {len(profiled)}")
    print(f"under the profiler: {rate:.1f} msg/s")
    if cpu_seconds is not None:
        print(f"CPU of the serve process tree (/proc): {cpu_seconds * per:.1f} ms per message")
    print(
        f"CPU in profiled threads: {total * per:.1f} ms per message; event loop thread"
        f" {on_loop * per:.1f}, other threads {(total - on_loop) * per:.1f}"
    )

    print(f"\n{'pipeline steps (called by submit)':<58}{'ms/msg':>8}{'share':>7}{'calls':>7}")
    rows = steps(every)
    in_submit = sum(ct for _, ct, _ in rows)
    for label, ct, calls in rows:
        if ct * per >= 0.05:
            print(f"  {label[:56]:<56}{ct * per:>8.2f}{ct / total:>7.0%}{calls:>7}")
    print(f"  {'all of submit':<56}{in_submit * per:>8.2f}{in_submit / total:>7.0%}")
    print("outside submit")
    for suffix, name, label in OUTSIDE:
        funcs = find(every, suffix, name)
        ct = sum(every[f][3] for f in funcs)
        calls = sum(every[f][1] for f in funcs)
        print(f"  {label:<56}{ct * per:>8.2f}{ct / total:>7.0%}{calls:>7}")
    print(f"  {'event loop thread, all of it (TLS, aiosmtpd, sockets)':<56}{on_loop * per:>8.2f}")
    print("  (threads C libraries start themselves, such as Argon2's, are not profiled;")
    print("   the /proc figure above includes them)")

    statements = sum(every[f][1] for name in SQL[1] for f in find(every, SQL[0], name))
    commits = sum(every[f][1] for f in find(every, SQL[0], "do_commit"))
    print(
        f"SQL statements per message: {statements / max(1, messages):.1f},"
        f" commits {commits / max(1, messages):.1f} (read-only sessions commit too)"
    )

    print(f"\n{'self time by library (C time to its caller)':<58}{'ms/msg':>8}{'share':>7}")
    for name, tt in sorted(self_time_by_library(every).items(), key=lambda kv: -kv[1]):
        if tt * per >= 0.2:
            print(f"  {name:<56}{tt * per:>8.2f}{tt / total:>7.0%}")

    print(f"\n{'functions by self time':<58}{'ms/msg':>8}{'share':>7}{'calls':>7}")
    ranked = sorted(every.items(), key=lambda kv: -kv[1][2])[: args.top]
    for func, (_cc, nc, tt, _ct, _callers) in ranked:
        where = f"{library(func)}: {func[2]}"
        if func[0] != "~":
            where += f" ({Path(func[0]).name}:{func[1]})"
        print(f"  {where[:56]:<56}{tt * per:>8.2f}{tt / total:>7.0%}{nc:>7}")


if __name__ == "__main__":
    main()
