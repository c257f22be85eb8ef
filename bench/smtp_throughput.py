"""SMTP submission throughput: `sealgate serve` against a do-nothing aiosmtpd (the ceiling).

Both servers get the same load in the same run: 10 KB messages over 4 concurrent
implicit-TLS connections, each authenticated once. Printed: messages/s, p50 and
p99 latency (MAIL FROM to the 250 after DATA), and sealgate's share of the ceiling.

    python bench/smtp_throughput.py [--messages 200] [--connections 4] [--size 10240]

It makes a throwaway data dir (SQLite, production Argon2 settings) and removes it.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import smtplib
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

READY = re.compile(r"smtp-tls=[\d.]+:(\d+)")
SENDER = "admin@bench.test"


@dataclass
class Result:
    name: str
    messages: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


def message(size: int, n: int) -> bytes:
    head = f"From: {SENDER}\r\nTo: {SENDER}\r\nSubject: bench {n}\r\n\r\n".encode()
    line = b"x" * 76 + b"\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


def run_load(
    name: str, port: int, password: str, *, connections: int, per_connection: int, size: int
) -> Result:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the bench's own throwaway certificate
    latencies: list[float] = []
    lock = threading.Lock()
    done = [0]
    total = connections * per_connection

    def worker(index: int) -> None:
        with smtplib.SMTP_SSL("127.0.0.1", port, context=ctx, timeout=120) as client:
            client.login(SENDER, password)
            for i in range(per_connection):
                raw = message(size, index * per_connection + i)
                start = time.perf_counter()
                client.sendmail(SENDER, [SENDER], raw)
                elapsed = time.perf_counter() - start
                with lock:
                    latencies.append(elapsed)
                    done[0] += 1
                    if done[0] % max(1, total // 10) == 0:
                        print(f"  {name}: {done[0]}/{total}", file=sys.stderr, flush=True)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Result(name, total, time.perf_counter() - began, latencies)


@contextmanager
def sealgate_server(data_dir: Path) -> Any:
    env = {
        **os.environ,
        "SEALGATE_DATA_DIR": str(data_dir),
        "SEALGATE_SMTP_SUBMISSION_PORT": "0",
        "SEALGATE_SMTP_TLS_PORT": "0",
        "SEALGATE_PORTAL_PORT": "0",
    }
    init = subprocess.run(
        [sys.executable, "-m", "sealgate", "init", "--domain", "bench.test"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    password = re.search(r"SMTP login:\s+\S+ / (\S+)", init.stdout)
    assert password, init.stdout
    proc = subprocess.Popen(
        [sys.executable, "-m", "sealgate", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    port = None
    for line in proc.stdout:
        match = READY.search(line)
        if match:
            port = int(match.group(1))
            break
    if port is None:
        raise RuntimeError("sealgate serve did not start")
    try:
        yield port, password.group(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        proc.stdout.close()


class NullHandler:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        return "250 OK"


@contextmanager
def null_server(cert: Path, key: Path) -> Any:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    accept: Callable[..., AuthResult] = lambda *_a: AuthResult(success=True)  # noqa: E731
    with socket.socket() as probe:  # aiosmtpd's Controller cannot bind port 0 itself
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(
        NullHandler(),
        hostname="127.0.0.1",
        port=port,
        ssl_context=ctx,
        authenticator=accept,
        auth_require_tls=False,
        data_size_limit=None,
    )
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=200, help="per connection")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--size", type=int, default=10 * 1024)
    args = parser.parse_args()
    load = {"connections": args.connections, "per_connection": args.messages, "size": args.size}

    with tempfile.TemporaryDirectory(prefix="sealgate-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        with sealgate_server(data_dir) as (port, password):
            sealgate = run_load("sealgate", port, password, **load)
        cert, key = data_dir / "tls" / "cert.pem", data_dir / "tls" / "key.pem"
        with null_server(cert, key) as port:
            ceiling = run_load("null aiosmtpd", port, "unused", **load)

    print(f"\n{args.connections} TLS connections x {args.messages} messages of {args.size} bytes")
    print(f"{'server':<16}{'msg/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for r in (sealgate, ceiling):
        print(f"{r.name:<16}{r.rate:>10.1f}{r.percentile(50):>10.1f}{r.percentile(99):>10.1f}")
    print(f"sealgate / ceiling throughput: {sealgate.rate / ceiling.rate:.2f}")
    slower = statistics.mean(sealgate.latencies) / statistics.mean(ceiling.latencies)
    print(f"mean latency ratio: {slower:.1f}x")


if __name__ == "__main__":
    main()
