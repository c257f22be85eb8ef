"""SMTP submission throughput of `sealgate serve` against its baselines, side by side in one run.

Servers (one hosted recipient per message, the same messages for all):
- ceiling: a do-nothing aiosmtpd server (bench/baselines.py) with sealgate's TLS
  context, STARTTLS and AUTH required, every AUTH accepted;
- gpg per message: the same server piping each message through one `gpg --encrypt`
  process to the recipient's public key (exported from sealgate), output kept in memory;
- sealgate encrypted / sealgate plain: one real `sealgate serve` process (production
  settings and Argon2; SQLite in its data dir, or --database-url), messages with and
  without the `[encrypt]` subject tag (or `X-Sealgate-Encrypt: yes`, --trigger header).

Loads, all on a STARTTLS submission listener (587-like):
- persistent: --connections clients, each connected and logged in before the clock
  starts, sending its share of the messages over that one connection; 10 KiB and 1 MiB;
- one connection per message: --connections clients, each opening a new connection
  for every message (connect, STARTTLS, AUTH, one message, QUIT), as most mail
  programs do; 10 KiB.
Each round runs every load on every server, the servers in a rotated order, so a
change in the machine's load hits them all alike; a load sends its message count and
goes on until it has run --min-seconds. The tables give the median of the rounds:
msg/s (messages over wall time), p50/p99 latency (MAIL FROM to the 250 after DATA;
with one connection per message, connect to the 250), the CPU per message of the
server's process tree (serve and any workers; gpg's children) and of the client
process, and the cores the server used. Ratios are the median of the per-round
ratios, beside the same ratio computed from CPU per message (less sensitive to what
else runs on the machine).

Before the rounds, unless --no-memory: the resident memory of the serve process tree
(serve and its workers) at idle, after one 10 KiB encrypted warm-up message, and its
peak while it takes one 25 MiB encrypted message (sampled every 20 ms, and serve's own
VmHWM), as a multiple of the message size.

    python bench/smtp_throughput.py [--rounds 3] [--connections 4] [--messages 160]
        [--large-messages 16] [--reconnect-messages 16] [--size 10240] [--large-size 1048576]
        [--min-seconds 2] [--database-url postgresql+psycopg://...] [--trigger subject|header]
        [--memory-size 26214400] [--no-memory]

Progress goes to stderr, the report to stdout. Throwaway data dir; a PostgreSQL
database given by --database-url is emptied first.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    KIB,
    MIB,
    RECIPIENT,
    ROOT,
    Result,
    RssSampler,
    SealgateServer,
    add_recipient,
    baseline_server,
    gpg_home,
    inbox_counts,
    load_average,
    log,
    peak_rss_mib,
    run_load,
    sealgate_server,
    tree_peak_rss_mib,
    tree_pids,
    tree_rss_mib,
)

CEILING, GPG, ENCRYPTED, PLAIN = "ceiling", "gpg", "encrypted", "plain"
LABELS = {
    CEILING: "ceiling (null aiosmtpd)",
    GPG: "gpg per message",
    ENCRYPTED: "sealgate encrypted",
    PLAIN: "sealgate plain",
}
MEMORY_AIM = 4.0  # peak growth, as a multiple of the message size (issue 15)


@dataclass(frozen=True)
class Target:
    key: str
    port: int
    password: str
    pid: int
    encrypt: str | None


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    size: int
    messages: int
    reconnect: bool


@dataclass(frozen=True)
class Ratio:
    label: str
    section: str
    top: str
    bottom: str
    aim: float


RATIOS = [
    Ratio("encrypted / ceiling", "persistent", ENCRYPTED, CEILING, 0.25),
    Ratio("plain / ceiling", "persistent", PLAIN, CEILING, 0.40),
    Ratio("encrypted / ceiling", "reconnect", ENCRYPTED, CEILING, 0.25),
    Ratio("encrypted / gpg", "persistent", ENCRYPTED, GPG, 2.0),
    Ratio("encrypted / gpg", "large", ENCRYPTED, GPG, 1.0),
]


def size_label(size: int) -> str:
    return f"{size // MIB} MiB" if size % MIB == 0 else f"{size / KIB:.0f} KiB"


def sections(args: argparse.Namespace) -> list[Section]:
    c = args.connections
    found = [
        Section(
            "persistent",
            f"{c} persistent connections, {size_label(args.size)}",
            args.size,
            args.messages,
            False,
        ),
        Section(
            "large",
            f"{c} persistent connections, {size_label(args.large_size)}",
            args.large_size,
            args.large_messages,
            False,
        ),
        Section(
            "reconnect",
            f"{c} clients, one connection per message, {size_label(args.size)}",
            args.size,
            args.reconnect_messages,
            True,
        ),
    ]
    return [s for s in found if s.messages > 0]


def commit() -> str:
    """The last commit that changed sealgate itself (bench/ and docs/ left out), and HEAD."""

    def log1(*paths: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(ROOT), "log", "-1", "--format=%h %s", "--", *paths],
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout.strip()

    code = log1(".", ":(exclude)bench", ":(exclude)docs")[:60] or "unknown"
    head = log1()[:7] or "unknown"
    return f"{code} (HEAD {head})"


ACCEPTED = {ENCRYPTED: 0, PLAIN: 0}  # 250s sealgate gave, to check against its INBOX


def load(
    target: Target, section: Section, connections: int, messages: int, min_seconds: float = 0
) -> Result:
    result = run_load(
        LABELS[target.key],
        target.port,
        target.password,
        connections=connections,
        messages=messages,
        size=section.size,
        reconnect=section.reconnect,
        encrypt=target.encrypt,
        cpu_of=target.pid,
        min_seconds=min_seconds,
    )
    if target.key in ACCEPTED:
        ACCEPTED[target.key] += len(result.latencies)
    return result


@dataclass
class Memory:
    processes: int
    idle_rss_mib: float  # the tree's resident memory at idle
    sampled_mib: float  # the largest tree RSS sampled during the message
    sampled_pss_mib: float
    serve_idle_mib: float  # VmHWM of the serve process itself
    serve_after_mib: float
    tree_hwm_idle_mib: float  # sum of the tree's VmHWM
    tree_hwm_after_mib: float
    size: int
    seconds: float
    failures: list[str]

    @property
    def growth_mib(self) -> float:
        """The tree's peak above idle: sampled, or serve's own VmHWM growth if that is more
        (a spike between samples). Worker processes' VmHWM cannot serve: their start-up
        peak can lie above anything a message later costs them."""
        return max(self.sampled_mib - self.idle_rss_mib, self.serve_after_mib - self.serve_idle_mib)

    @property
    def multiple(self) -> float:
        return self.growth_mib * MIB / self.size


def measure_memory(server: SealgateServer, size: int, trigger: str) -> Memory:
    """The tree at idle after one small encrypted message, then during one `size` one."""
    common = {"connections": 1, "messages": 1, "encrypt": trigger}
    warm = run_load("warm-up", server.starttls_port, server.password, size=10 * KIB, **common)
    time.sleep(1)
    idle_rss = tree_rss_mib(server.pid)
    hwm_idle, serve_idle = tree_peak_rss_mib(server.pid), peak_rss_mib(server.pid)
    log(f"  idle: serve tree {idle_rss:.0f} MiB; one {size_label(size)} encrypted message ...")
    with RssSampler(server.pid, interval=0.02) as sampler:
        big = run_load("big", server.starttls_port, server.password, size=size, **common)
        time.sleep(0.5)
    hwm_after, serve_after = tree_peak_rss_mib(server.pid), peak_rss_mib(server.pid)
    log(f"  peak: {sampler.peak_mib:.0f} MiB ({big.seconds:.1f} s)")
    ACCEPTED[ENCRYPTED] += len(warm.latencies) + len(big.latencies)
    return Memory(
        len(tree_pids(server.pid)),
        idle_rss,
        sampler.peak_mib,
        sampler.peak_pss_mib,
        serve_idle,
        serve_after,
        hwm_idle,
        hwm_after,
        size,
        big.seconds,
        big.failures,
    )


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(
    args: argparse.Namespace,
    plan: list[Section],
    results: dict[tuple[str, str], list[Result]],
    memory: Memory | None,
    started: str,
    load_start: str,
) -> None:
    out: Callable[[str], None] = print
    database = "PostgreSQL" if args.database_url else "SQLite (WAL, data dir)"
    out(f"sealgate code at {commit()}")
    out(f"{database}, production settings; trigger: {args.trigger}; recipient {RECIPIENT}")
    out(f"started {started}")
    out(f"load average at start {load_start}")
    out(f"load average at end   {load_average()}")
    out(f"median of {args.rounds} round(s); servers interleaved, order rotated each round")
    for section in plan:
        out("")
        out(
            f"{section.title}, at least {section.messages} messages and {args.min_seconds:g} s"
            " per server per round"
        )
        out(
            f"{'server':<26}{'msg/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/msg':>12}{'cores':>7}"
            f"{'client ms/msg':>15}"
        )
        for key in (CEILING, GPG, ENCRYPTED, PLAIN):
            rows = results.get((section.key, key), [])
            if not rows:
                continue
            cpu = [r.cpu_ms_per_message for r in rows if r.cpu_ms_per_message is not None]
            cores = [r.cpu_seconds / r.seconds for r in rows if r.cpu_seconds is not None]
            out(
                f"{LABELS[key]:<26}{median([r.rate for r in rows]):>9.1f}"
                f"{median([r.percentile(50) for r in rows]):>9.1f}"
                f"{median([r.percentile(99) for r in rows]):>9.1f}"
                f"{median(cpu):>12.1f}{median(cores):>7.2f}"
                f"{median([r.client_cpu_seconds / r.messages * 1000 for r in rows]):>15.1f}"
            )
            failed = [f for r in rows for f in r.failures]
            if failed:
                out(f"  {len(failed)} failed, first: {failed[0]}")
    titles = {s.key: s for s in plan}
    if plan:
        out("")
        out(
            f"{'ratio of msg/s (median of the per-round ratios)':<58}{'value':>6}{'aim':>7}"
            f"{'by CPU':>8}  rounds"
        )
    for ratio in RATIOS:
        tops = results.get((ratio.section, ratio.top), [])
        bottoms = results.get((ratio.section, ratio.bottom), [])
        if not tops or not bottoms:
            continue
        section = titles[ratio.section]
        where = "one connection per message" if section.reconnect else "persistent"
        per_round = [t.rate / b.rate for t, b in zip(tops, bottoms, strict=True)]
        value = median(per_round)
        by_cpu = median(
            [
                b.cpu_ms_per_message / t.cpu_ms_per_message
                for t, b in zip(tops, bottoms, strict=True)
                if t.cpu_ms_per_message and b.cpu_ms_per_message
            ]
        )
        mark = "" if value >= ratio.aim else "  (below aim)"
        label = f"{ratio.label}, {where}, {size_label(section.size)}"
        rounds = " ".join(f"{v:.2f}" for v in per_round)
        out(
            f"{label:<58}{value:>6.2f}{'≥ ' + format(ratio.aim, 'g'):>7}{by_cpu:>8.2f}"
            f"  {rounds}{mark}"
        )
    if plan:
        out(
            "(by CPU: the inverse ratio of the servers' CPU ms per message, what the msg/s"
            " ratio would be if both were CPU-bound on the same cores)"
        )
    if memory is not None:
        out("")
        out(
            f"memory: sealgate serve process tree ({memory.processes} process(es)), "
            f"one {size_label(memory.size)} encrypted message ({memory.seconds:.1f} s)"
        )
        out(
            f"peak RSS above idle: +{memory.growth_mib:.0f} MiB = {memory.multiple:.2f}x the"
            f" message (aim < {MEMORY_AIM:g}x); idle {memory.idle_rss_mib:.0f} MiB"
            + ("" if memory.multiple < MEMORY_AIM else "  (above aim)")
        )
        out(
            f"  tree sampled every 20 ms: peak {memory.sampled_mib:.0f} MiB RSS,"
            f" {memory.sampled_pss_mib:.0f} MiB PSS; serve's VmHWM {memory.serve_idle_mib:.0f}"
            f" → {memory.serve_after_mib:.0f} MiB; sum of the tree's VmHWM"
            f" {memory.tree_hwm_idle_mib:.0f} → {memory.tree_hwm_after_mib:.0f} MiB"
        )
        for failure in memory.failures:
            out(f"  FAILED: {failure}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=4, help="concurrent clients")
    parser.add_argument("--messages", type=int, default=160, help="persistent, small (0: skip)")
    parser.add_argument(
        "--large-messages", type=int, default=16, help="persistent, large (0: skip)"
    )
    parser.add_argument(
        "--reconnect-messages", type=int, default=16, help="one connection each (0: skip)"
    )
    parser.add_argument("--size", type=int, default=10 * KIB, help="bytes, small messages")
    parser.add_argument("--large-size", type=int, default=MIB, help="bytes, large messages")
    parser.add_argument("--memory-size", type=int, default=25 * MIB, help="bytes")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    parser.add_argument(
        "--min-seconds",
        type=float,
        default=2.0,
        help="a load goes on past its message count until it has run this long",
    )
    parser.add_argument("--warm-up", type=int, default=8, help="messages per server and load")
    parser.add_argument("--trigger", choices=["subject", "header"], default="subject")
    parser.add_argument("--database-url", help="PostgreSQL (emptied first) instead of SQLite")
    args = parser.parse_args()

    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_start = load_average()
    plan = sections(args)
    results: dict[tuple[str, str], list[Result]] = {}
    memory: Memory | None = None
    log(f"python bench/smtp_throughput.py {shlex.join(sys.argv[1:])}")
    log(f"load average {load_start}")
    with tempfile.TemporaryDirectory(prefix="sealgate-bench-") as tmp:
        root = Path(tmp)
        data_dir = root / "data"
        log("starting sealgate serve (init, a second hosted address, serve) ...")
        with sealgate_server(
            data_dir, database_url=args.database_url, prepare=add_recipient
        ) as server:
            if not args.no_memory:
                log("memory:")
                memory = measure_memory(server, args.memory_size, args.trigger)
            home = gpg_home(root, server.cli("keys", "export", RECIPIENT))
            cert, key = data_dir / "tls" / "cert.pem", data_dir / "tls" / "key.pem"
            with (
                baseline_server("null", cert, key) as null,
                baseline_server("gpg", cert, key, gpg_home=home) as gpg,
            ):
                targets = [
                    Target(CEILING, null.port, "any", null.pid, None),
                    Target(GPG, gpg.port, "any", gpg.pid, None),
                    Target(
                        ENCRYPTED, server.starttls_port, server.password, server.pid, args.trigger
                    ),
                    Target(PLAIN, server.starttls_port, server.password, server.pid, None),
                ]
                log("warm-up ...")
                for section in plan:
                    for target in targets:
                        warm = min(args.warm_up, section.messages)
                        load(target, section, min(args.connections, warm), warm)
                for n in range(args.rounds):
                    log(f"round {n + 1}/{args.rounds} (load average {load_average()})")
                    for section in plan:
                        for i in range(len(targets)):
                            target = targets[(i + n) % len(targets)]
                            result = load(
                                target,
                                section,
                                args.connections,
                                section.messages,
                                args.min_seconds,
                            )
                            results.setdefault((section.key, target.key), []).append(result)
                            failed = f", {len(result.failures)} FAILED" if result.failures else ""
                            log(
                                f"  {section.key:<10} {LABELS[target.key]:<24}"
                                f" {result.rate:8.1f} msg/s{failed}"
                            )
            stored = inbox_counts(server)
    print()
    report(args, plan, results, memory, started, load_start)
    check = (
        f"\n{RECIPIENT}'s INBOX: {stored.get(True, 0)} encrypted, {stored.get(False, 0)} plain;"
        f" sealgate answered 250 to {ACCEPTED[ENCRYPTED]} encrypted, {ACCEPTED[PLAIN]} plain"
    )
    same = stored.get(True, 0) == ACCEPTED[ENCRYPTED] and stored.get(False, 0) == ACCEPTED[PLAIN]
    print(check + ("" if same else "  MISMATCH"))
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
