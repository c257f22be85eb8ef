"""Peak memory of `sealgate serve` under many large encrypted submissions at once (issue 10).

Twenty implicit-TLS clients each submit one 24 MiB message with `[encrypt]` to a
hosted address, all at the same time; the message is streamed from a generator, so
the bench itself stays small. A `451 4.3.1` (the in-flight budget is spent) is
retried after a short pause until the message is accepted. Printed: the peak RSS of
the serve process (VmHWM), the 250s and 451s, and whether every message answered
250 is in the mailbox, encrypted, under the queue id of its 250.

Side by side, the baseline: the same load with the budget lifted (`[limits]
in_flight_bytes` = 64 GiB), as before issue 10, with fewer clients (default 4,
the issue's own figure) so the machine is not exhausted.

    python bench/memory.py [--clients 20] [--size 25165824] [--baseline-clients 4]

It makes throwaway data dirs (SQLite, production settings) and removes them.
"""

from __future__ import annotations

import argparse
import random
import re
import smtplib
import sqlite3
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import SENDER, peak_rss_mib, sealgate_server

AIM_MIB = 1536
QUEUED = re.compile(rb"queued as (\S+)")
LINE = b"x" * 76 + b"\r\n"
CHUNK = LINE * (1024 * 1024 // len(LINE))


@dataclass
class Tally:
    accepted: dict[str, int] = field(default_factory=dict)  # queue id -> message number
    busy: int = 0
    other: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def chunks(n: int, size: int) -> Iterator[bytes]:
    """One message of about `size` bytes, made as it is sent (no leading dots)."""
    head = (
        f"From: {SENDER}\r\nTo: {SENDER}\r\nSubject: [encrypt] memory {n}\r\n"
        f"Message-ID: <memory-{n}-{time.time_ns()}@bench.test>\r\n\r\n"
    ).encode()
    yield head
    left = size - len(head)
    while left >= len(CHUNK):
        yield CHUNK
        left -= len(CHUNK)
    yield LINE * max(1, left // len(LINE))


def submit(port: int, password: str, n: int, size: int, tally: Tally) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the bench's own throwaway certificate
    with smtplib.SMTP_SSL("127.0.0.1", port, context=ctx, timeout=600) as client:
        client.login(SENDER, password)
        while True:
            client.mail(SENDER, [f"SIZE={size}"])
            client.rcpt(SENDER)
            client.putcmd("data")
            code, reply = client.getreply()
            if code == 354:
                assert client.sock is not None
                for piece in chunks(n, size):
                    client.sock.sendall(piece)
                client.sock.sendall(b".\r\n")
                code, reply = client.getreply()
            if code == 250:
                found = QUEUED.search(reply)
                with tally.lock:
                    tally.accepted[found.group(1).decode() if found else "?"] = n
                return
            if code == 451 and reply.startswith(b"4.3.1"):
                with tally.lock:
                    tally.busy += 1
                client.rset()
                time.sleep(0.5 + random.random())
                continue
            with tally.lock:
                tally.other.append(f"{code} {reply.decode(errors='replace')}")
            return


def stored(data_dir: Path) -> dict[str, tuple[str, bool]]:
    """Queue id -> (subject, encrypted) of every message in an inbox."""
    with sqlite3.connect(f"file:{data_dir / 'sealgate.db'}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT queue_id, subject, encrypted FROM mailbox_messages WHERE folder = 'INBOX'"
        ).fetchall()
    return {queue_id: (subject, bool(encrypted)) for queue_id, subject, encrypted in rows}


@dataclass
class Run:
    name: str
    clients: int
    seconds: float
    peak_mib: float
    tally: Tally
    delivered: int


def run(name: str, clients: int, size: int, env: dict[str, str]) -> Run:
    tally = Tally()
    with tempfile.TemporaryDirectory(prefix="sealgate-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        with sealgate_server(data_dir, env) as server:
            before = peak_rss_mib(server.pid)
            threads = [
                threading.Thread(target=submit, args=(server.port, server.password, n, size, tally))
                for n in range(clients)
            ]
            began = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            seconds = time.perf_counter() - began
            peak = peak_rss_mib(server.pid)
        inbox = stored(data_dir)
    delivered = sum(
        1 for queue_id, n in tally.accepted.items() if inbox.get(queue_id) == (f"memory {n}", True)
    )
    print(f"  {name}: idle {before:.0f} MiB, peak {peak:.0f} MiB", file=sys.stderr)
    return Run(name, clients, seconds, peak, tally, delivered)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--size", type=int, default=24 * 1024 * 1024)
    parser.add_argument("--baseline-clients", type=int, default=4, help="0 skips the baseline")
    args = parser.parse_args()

    runs = [run("budget (default)", args.clients, args.size, {})]
    if args.baseline_clients:
        lifted = {"SEALGATE_LIMITS_IN_FLIGHT_BYTES": str(64 * 1024**3)}
        runs.append(run("no budget (before)", args.baseline_clients, args.size, lifted))

    print(f"\nconcurrent submissions of {args.size} bytes with [encrypt], one TLS client each")
    print(
        f"{'run':<20}{'clients':>8}{'250':>6}{'451':>6}{'stored':>8}{'seconds':>9}{'peak MiB':>10}"
    )
    for r in runs:
        t = r.tally
        print(
            f"{r.name:<20}{r.clients:>8}{len(t.accepted):>6}{t.busy:>6}{r.delivered:>8}"
            f"{r.seconds:>9.1f}{r.peak_mib:>10.0f}"
        )
        for line in t.other:
            print(f"  unexpected reply: {line}")
    main_run = runs[0]
    print(f"peak RSS with the budget: {main_run.peak_mib:.0f} MiB (aim {AIM_MIB} MiB)")
    if len(runs) > 1:
        per_before = (runs[1].peak_mib) / runs[1].clients
        print(f"without the budget: {per_before:.0f} MiB of peak per concurrent message")
    lost = len(main_run.tally.accepted) - main_run.delivered
    ok = (
        main_run.peak_mib < AIM_MIB
        and lost == 0
        and len(main_run.tally.accepted) == args.clients
        and not main_run.tally.other
    )
    print("every 250 stored, encrypted: " + ("yes" if lost == 0 else f"NO, {lost} missing"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
