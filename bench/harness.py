"""Shared pieces of the SMTP benchmarks: a throwaway `sealgate serve`, a TLS load, a null server.

The load is N implicit-TLS connections, each authenticated once, each sending its
share of messages; latency is MAIL FROM to the 250 after DATA.
"""

from __future__ import annotations

import os
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
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


def message(size: int, n: int, subject: str = "bench") -> bytes:
    head = f"From: {SENDER}\r\nTo: {SENDER}\r\nSubject: {subject} {n}\r\n\r\n".encode()
    line = b"x" * 76 + b"\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


def run_load(
    name: str,
    port: int,
    password: str,
    *,
    connections: int,
    per_connection: int,
    size: int,
    subject: str = "bench",
) -> Result:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the bench's own throwaway certificate
    latencies: list[float] = []
    lock = threading.Lock()
    done = [0]
    total = connections * per_connection

    def worker(index: int) -> None:
        with smtplib.SMTP_SSL("127.0.0.1", port, context=ctx, timeout=600) as client:
            client.login(SENDER, password)
            for i in range(per_connection):
                raw = message(size, index * per_connection + i, subject)
                start = time.perf_counter()
                client.sendmail(SENDER, [SENDER], raw)
                elapsed = time.perf_counter() - start
                with lock:
                    latencies.append(elapsed)
                    done[0] += 1
                    if done[0] % max(1, total // 5) == 0:
                        print(f"  {name}: {done[0]}/{total}", file=sys.stderr, flush=True)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Result(name, total, time.perf_counter() - began, latencies)


@dataclass
class SealgateServer:
    port: int
    password: str
    pid: int
    data_dir: Path


@contextmanager
def sealgate_server(
    data_dir: Path, extra_env: dict[str, str] | None = None
) -> Iterator[SealgateServer]:
    """`sealgate init` + `sealgate serve` on a throwaway data dir, production settings."""
    env = {
        **os.environ,
        "SEALGATE_DATA_DIR": str(data_dir),
        "SEALGATE_SMTP_SUBMISSION_PORT": "0",
        "SEALGATE_SMTP_TLS_PORT": "0",
        "SEALGATE_PORTAL_PORT": "0",
        "SEALGATE_SMTP_INBOUND_PORT": "0",
        **(extra_env or {}),
    }
    init = subprocess.run(
        [sys.executable, "-m", "sealgate", "init", "--domain", "bench.test"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    password = re.search(r"SMTP login:\s+\S+ / (\S+)", init.stdout)
    if password is None:
        raise RuntimeError("sealgate init printed no SMTP login")
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
        yield SealgateServer(port, password.group(1), proc.pid, data_dir)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
        proc.stdout.close()


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def aiosmtpd_server(handler: Any, cert: Path, key: Path) -> Iterator[int]:
    """A bare aiosmtpd server with implicit TLS that accepts any AUTH; yields its port."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    accept: Callable[..., AuthResult] = lambda *_a: AuthResult(success=True)  # noqa: E731
    port = free_port()  # aiosmtpd's Controller cannot bind port 0 itself
    controller = Controller(
        handler,
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


class NullHandler:
    """Accepts every message and does nothing with it: the ceiling of the load."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        return "250 OK"
