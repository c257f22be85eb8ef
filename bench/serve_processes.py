"""CPU per message of each process of `sealgate serve`, at a few client counts.

bench/smtp_throughput.py gives the CPU of the serve process tree as one figure, and
bench/store_groups.py the CPU of a worker's two halves run in a tight loop in one
process. This bench sits between them: one real `sealgate serve` (production settings,
SQLite or --database-url), persistent STARTTLS clients as in smtp_throughput, and for
each client count the CPU per message of the serve process (the SMTP edge) and of its
worker processes, read from /proc, with the cores each kept busy. One client sends its
messages one after the other (every process sleeps between two messages); more clients
keep several messages in flight.

    python bench/serve_processes.py [--kind encrypted|plain] [--clients 1 4]
        [--messages 600] [--rounds 3] [--database-url postgresql+psycopg://...]

Medians of the rounds; a round is one load per client count.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    KIB,
    add_recipient,
    load_average,
    log,
    run_load,
    sealgate_server,
    tree_pids,
)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (not its children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Round:
    rate: float  # messages per second
    p50: float  # ms
    serve: float  # CPU ms per message
    workers: float  # CPU ms per message, all workers together
    client: float  # CPU ms per message
    serve_cores: float
    worker_cores: float


def one_round(server_pid: int, port: int, password: str, args: argparse.Namespace, n: int) -> Round:
    workers = [p for p in tree_pids(server_pid) if p != server_pid]
    before = {p: cpu_seconds(p) for p in [server_pid, *workers]}
    result = run_load(
        f"{n} client(s)",
        port,
        password,
        connections=n,
        messages=args.messages,
        size=args.size,
        encrypt="subject" if args.kind == "encrypted" else None,
    )
    if result.failures:
        raise SystemExit(f"the load failed: {result.failures[:3]}")
    spent = {p: cpu_seconds(p) - before[p] for p in before}
    count = len(result.latencies)
    worker_cpu = sum(spent[p] for p in workers)
    return Round(
        rate=result.rate,
        p50=result.percentile(50),
        serve=spent[server_pid] / count * 1000,
        workers=worker_cpu / count * 1000,
        client=result.client_cpu_seconds / count * 1000,
        serve_cores=spent[server_pid] / result.seconds,
        worker_cores=worker_cpu / result.seconds,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--kind", choices=["encrypted", "plain"], default="encrypted")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--messages", type=int, default=600, help="per load")
    parser.add_argument("--size", type=int, default=10 * KIB)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", help="PostgreSQL (emptied first) instead of SQLite")
    args = parser.parse_args()

    start_load = load_average()
    rounds: dict[int, list[Round]] = {n: [] for n in args.clients}
    with (
        tempfile.TemporaryDirectory(prefix="sealgate-bench-") as tmp,
        sealgate_server(
            Path(tmp) / "data", database_url=args.database_url, prepare=add_recipient
        ) as server,
    ):
        port, password = server.starttls_port, server.password
        log("warm-up ...")
        run_load("warm-up", port, password, connections=4, messages=200, size=args.size)
        processes = len(tree_pids(server.pid))
        for number in range(args.rounds):
            for n in args.clients:
                log(f"round {number + 1}: {n} client(s)")
                rounds[n].append(one_round(server.pid, port, password, args, n))

    database = "PostgreSQL" if args.database_url else "SQLite"
    print(f"sealgate serve, {database}, production settings; {processes} processes in its tree")
    print(f"{args.messages} {args.kind} messages of {args.size} bytes per load, persistent")
    print(f"connections; median of {args.rounds} round(s)")
    print(f"load average at start {start_load}")
    print(f"load average at end   {load_average()}")
    print()
    print("                       CPU ms per message                  cores busy")
    print("clients  msg/s  p50 ms    serve  workers  both   client    serve  workers")
    for n in args.clients:
        got = rounds[n]

        def mid(field: str, got: list[Round] = got) -> float:
            return statistics.median(getattr(r, field) for r in got)

        print(
            f"{n:>7} {mid('rate'):6.0f} {mid('p50'):7.1f}  {mid('serve'):7.2f} "
            f"{mid('workers'):8.2f} {mid('serve') + mid('workers'):5.2f} {mid('client'):7.2f}"
            f"  {mid('serve_cores'):7.2f} {mid('worker_cores'):8.2f}"
        )


if __name__ == "__main__":
    main()
