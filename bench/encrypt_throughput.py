"""Encrypted submission throughput, against encryption off and against a gpg-per-message filter.

Three servers get the same load in one run (one hosted recipient per message):
- `sealgate serve` with encryption on (the subject tag) and off;
- a baseline: an aiosmtpd server whose handler runs the `gpg` command once per
  message to encrypt it, the way Python content filters bolted onto an MTA do.
Then the peak memory (VmHWM) of the sealgate process while it takes one 24 MiB
message, encrypted.

    python bench/encrypt_throughput.py [--small 120] [--large 12] [--connections 2]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    Result,
    aiosmtpd_server,
    peak_rss_mib,
    run_load,
    sealgate_server,
)

KIB, MIB = 1024, 1024 * 1024


class GpgPerMessage:
    """Encrypts each message by running gpg once, then keeps the result (in memory)."""

    def __init__(self, home: Path, recipient: str) -> None:
        self.home = home
        self.recipient = recipient
        self.stored = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        proc = await asyncio.create_subprocess_exec(
            "gpg",
            "--homedir",
            str(self.home),
            "--batch",
            "--trust-model",
            "always",
            "--armor",
            "--encrypt",
            "--recipient",
            self.recipient,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        out, _ = await proc.communicate(envelope.original_content)
        if proc.returncode != 0:
            return "451 4.3.0 gpg failed"
        self.stored += len(out)
        return "250 OK"


def gpg_home(root: Path, address: str) -> Path:
    home = root / "gnupg"
    home.mkdir(mode=0o700)
    subprocess.run(
        [
            "gpg",
            "--homedir",
            str(home),
            "--batch",
            "--passphrase",
            "",
            "--quick-gen-key",
            address,
            "ed25519",
            "sign",
            "never",
        ],
        check=True,
        capture_output=True,
    )
    fpr = subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--with-colons", "--list-keys", address],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    fingerprint = next(line.split(":")[9] for line in fpr.splitlines() if line.startswith("fpr"))
    subprocess.run(
        [
            "gpg",
            "--homedir",
            str(home),
            "--batch",
            "--passphrase",
            "",
            "--quick-add-key",
            fingerprint,
            "cv25519",
            "encr",
            "never",
        ],
        check=True,
        capture_output=True,
    )
    return home


def table(title: str, rows: list[Result]) -> None:
    print(f"\n{title}")
    print(f"{'server':<26}{'msg/s':>9}{'p50 ms':>10}{'p99 ms':>10}")
    for r in rows:
        print(f"{r.name:<26}{r.rate:>9.1f}{r.percentile(50):>10.1f}{r.percentile(99):>10.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--small", type=int, default=120, help="10 KB messages per run")
    parser.add_argument("--large", type=int, default=12, help="1 MB messages per run")
    parser.add_argument("--connections", type=int, default=2)
    args = parser.parse_args()
    c = args.connections
    runs = [("10 KB", 10 * KIB, max(1, args.small // c)), ("1 MB", MIB, max(1, args.large // c))]
    results: dict[str, list[Result]] = {}
    with tempfile.TemporaryDirectory(prefix="sealgate-bench-") as tmp:
        root = Path(tmp)
        data_dir = root / "data"
        with sealgate_server(data_dir) as server:
            for label, size, per in runs:
                load = {"connections": c, "per_connection": per, "size": size}
                results[label] = [
                    run_load(
                        "sealgate, encrypted",
                        server.port,
                        server.password,
                        subject="[encrypt] bench",
                        **load,
                    ),
                    run_load("sealgate, encryption off", server.port, server.password, **load),
                ]
            before = peak_rss_mib(server.pid)
            run_load(
                "sealgate, one 24 MiB",
                server.port,
                server.password,
                connections=1,
                per_connection=1,
                size=24 * MIB,
                subject="[encrypt] big",
            )
            after = peak_rss_mib(server.pid)
        home = gpg_home(root, "admin@bench.test")
        handler = GpgPerMessage(home, "admin@bench.test")
        cert, key = data_dir / "tls" / "cert.pem", data_dir / "tls" / "key.pem"
        with aiosmtpd_server(handler, cert, key) as port:
            for label, size, per in runs:
                load = {"connections": c, "per_connection": per, "size": size}
                results[label].append(run_load("gpg per message (baseline)", port, "x", **load))

    for label, rows in results.items():
        table(f"{label} messages, {c} TLS connections, one hosted recipient", rows)
        enc, off, gpg = rows
        print(f"encrypted / encryption off: {enc.rate / off.rate:.2f}")
        print(f"encrypted / gpg per message: {enc.rate / gpg.rate:.2f}")
    print(
        f"\npeak RSS of sealgate serve: {before:.0f} MiB before, {after:.0f} MiB after one"
        f" encrypted 24 MiB message (+{after - before:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
