"""SMTP submission throughput: `sealgate serve` against a do-nothing aiosmtpd (the ceiling).

Both servers get the same load in the same run: 10 KB messages over 4 concurrent
implicit-TLS connections, each authenticated once. Printed: messages/s, p50 and
p99 latency (MAIL FROM to the 250 after DATA), and sealgate's share of the ceiling.

    python bench/smtp_throughput.py [--messages 200] [--connections 4] [--size 10240]

It makes a throwaway data dir (SQLite, production Argon2 settings) and removes it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import NullHandler, aiosmtpd_server, run_load, sealgate_server


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--messages", type=int, default=200, help="per connection")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--size", type=int, default=10 * 1024)
    args = parser.parse_args()
    load = {"connections": args.connections, "per_connection": args.messages, "size": args.size}

    with tempfile.TemporaryDirectory(prefix="sealgate-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        with sealgate_server(data_dir) as server:
            sealgate = run_load("sealgate", server.port, server.password, **load)
        cert, key = data_dir / "tls" / "cert.pem", data_dir / "tls" / "key.pem"
        with aiosmtpd_server(NullHandler(), cert, key) as port:
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
