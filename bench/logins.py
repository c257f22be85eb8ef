"""SMTP logins per second, one TLS connection per login, as mail programs connect.

Three `sealgate serve` processes (SQLite, production settings otherwise) run side by
side and get the same load in turn, rounds interleaved so that the machine's load
falls on each alike:

- `before`: the old login cost (RFC 9106 option 2: t=3, 64 MiB, p=4), no cache;
- `no cache`: today's cost (OWASP: t=2, 19 MiB, p=1), verified-credential cache off;
- `cache`: today's cost with the cache on (the default).

Each login is connect + implicit TLS handshake + EHLO + AUTH PLAIN + QUIT, from
`--clients` threads. Printed per server: median logins/s over the rounds, p50/p99
of the AUTH command alone, and the server's CPU (user + system, all its threads)
per login; then the ratios against `no cache` and `before`.

    python bench/logins.py [--logins 200] [--clients 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import smtplib
import ssl
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import SENDER, SealgateServer, sealgate_server

OLD_COST = {
    "SEALGATE_PASSWORDS_TIME_COST": "3",
    "SEALGATE_PASSWORDS_MEMORY_COST": "65536",
    "SEALGATE_PASSWORDS_PARALLELISM": "4",
}
# Every listener that is not measured on a free port, so the three servers (and other
# benches on the machine) do not collide.
QUIET_PORTS = {"SEALGATE_IMAP_PORT": "0", "SEALGATE_IMAP_TLS_PORT": "0"}
CONFIGS: dict[str, dict[str, str]] = {
    "before": {**OLD_COST, "SEALGATE_PASSWORDS_LOGIN_CACHE_SECONDS": "0"},
    "no cache": {"SEALGATE_PASSWORDS_LOGIN_CACHE_SECONDS": "0"},
    "cache": {},
}


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process and all its threads so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Round:
    logins: int
    seconds: float
    cpu: float
    auth_latencies: list[float]

    @property
    def rate(self) -> float:
        return self.logins / self.seconds


@dataclass
class Series:
    name: str
    rounds: list[Round] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return statistics.median(r.rate for r in self.rounds)

    @property
    def cpu_ms(self) -> float:
        return statistics.median(r.cpu / r.logins for r in self.rounds) * 1000

    def percentile(self, p: float) -> float:
        ordered = sorted(x for r in self.rounds for x in r.auth_latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


def one_round(server: SealgateServer, logins: int, clients: int) -> Round:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the bench's own throwaway certificate
    latencies: list[float] = []
    guard = threading.Lock()
    failures: list[str] = []

    def client(count: int) -> None:
        for _ in range(count):
            with smtplib.SMTP_SSL("127.0.0.1", server.port, context=ctx, timeout=120) as smtp:
                smtp.ehlo()
                smtp.user, smtp.password = SENDER, server.password
                start = time.perf_counter()
                code, _reply = smtp.auth("PLAIN", smtp.auth_plain)
                elapsed = time.perf_counter() - start
                if code != 235:
                    failures.append(str(code))
            with guard:
                latencies.append(elapsed)

    shares = [logins // clients + (1 if i < logins % clients else 0) for i in range(clients)]
    threads = [threading.Thread(target=client, args=(n,)) for n in shares]
    cpu_before = cpu_seconds(server.pid)
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - began
    cpu = cpu_seconds(server.pid) - cpu_before
    if failures:
        raise RuntimeError(f"{len(failures)} logins refused: {failures[:3]}")
    return Round(logins, seconds, cpu, latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--logins", type=int, default=200, help="per server and round")
    parser.add_argument("--clients", type=int, default=4, help="concurrent client threads")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    series = {name: Series(name) for name in CONFIGS}
    with tempfile.TemporaryDirectory(prefix="sealgate-bench-") as tmp, ExitStack() as stack:
        servers = {
            name: stack.enter_context(
                sealgate_server(Path(tmp) / name.replace(" ", "-"), {**QUIET_PORTS, **env})
            )
            for name, env in CONFIGS.items()
        }
        for server in servers.values():  # warm up: imports, first key loads, first login
            one_round(server, args.clients, args.clients)
        for _ in range(args.rounds):
            for name, server in servers.items():
                series[name].rounds.append(one_round(server, args.logins, args.clients))

    print(
        f"\n{args.logins} SMTP logins per round (one implicit-TLS connection each),"
        f" {args.clients} clients, median of {args.rounds} rounds; load {os.getloadavg()[0]:.1f}"
    )
    header = ("logins/s", 10), ("AUTH p50 ms", 13), ("AUTH p99 ms", 13), ("CPU ms/login", 14)
    print(f"{'server':<12}" + "".join(f"{title:>{width}}" for title, width in header))
    for s in series.values():
        print(
            f"{s.name:<12}{s.rate:>10.1f}{s.percentile(50):>13.1f}{s.percentile(99):>13.1f}"
            f"{s.cpu_ms:>14.1f}"
        )
    cache, no_cache, before = series["cache"], series["no cache"], series["before"]
    print(f"cache / no cache: {cache.rate / no_cache.rate:.2f}x logins/s")
    print(f"cache / before:   {cache.rate / before.rate:.2f}x logins/s")
    print(f"no cache / before: {no_cache.rate / before.rate:.2f}x logins/s")


if __name__ == "__main__":
    main()
