"""DKIM signing per message: dkimpy's own RSA arithmetic against OpenSSL's, side by side.

Both sides run the relay's call, `gateway.dkim.sign.sign(wire_form(raw), keys)`, on the
same 10 KiB messages with the same 2048-bit RSA key (made as `sealgate` makes a
domain's), in one process, alternating in rounds so that load on the shared machine
falls on both alike:

- dkimpy arithmetic: `openssl_rsa.dkimpy_arithmetic()` puts dkimpy's pure-Python
  RSASSA-PKCS1-v1_5 back (what the relay paid before);
- OpenSSL: the hook as the relay runs it (parsed key cached);
- ed25519-sha256 for reference (PyNaCl; the hook does not touch it);
- the RSA value alone, each way, and dkimpy's parse of the PEM key, which it does
  for every signature (the rest is canonicalisation and header hashing);
- a key's first signature in a process (the cache empty: OpenSSL checks the key).

    python bench/dkim_sign.py [--n 400] [--rounds 8] [--size 10240]

Printed per line: CPU milliseconds per signature (median and mean, this process's
CPU time), wall-clock median, and the ratio of the CPU median to dkimpy's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dkim.crypto

from bench.harness import DOMAIN, KIB, message
from gateway.dkim import keys, openssl_rsa
from gateway.dkim import sign as dkim_sign
from gateway.relay import wire_form


@dataclass
class Figure:
    name: str
    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)

    def time(self, op: Callable[[], object]) -> None:
        cpu, wall = time.process_time(), time.perf_counter()
        op()
        self.cpu.append(time.process_time() - cpu)
        self.wall.append(time.perf_counter() - wall)

    @property
    def cpu_ms(self) -> float:
        return statistics.median(self.cpu) * 1e3


def signing_key(algorithm: keys.Algorithm) -> keys.SigningKey:
    private, _public = keys._generate(algorithm)
    selector = keys.selector_for(algorithm, dt.datetime.now(dt.UTC))
    return keys.SigningKey(DOMAIN, selector, algorithm, private)


def run(n: int, rounds: int, size: int) -> list[Figure]:
    if not openssl_rsa.install():
        sys.exit(f"dkimpy {openssl_rsa.dkimpy_version()}: the hook is not in, nothing to compare")
    rsa_key, ed_key = signing_key("rsa"), signing_key("ed25519")
    messages = [wire_form(message(size, i)) for i in range(n)]
    parsed = dkim.crypto.parse_pem_private_key(rsa_key.private)
    digests = [hashlib.sha256(raw) for raw in messages]
    slow, fast = Figure("rsa-sha256, dkimpy arithmetic"), Figure("rsa-sha256, OpenSSL")
    ed = Figure("ed25519-sha256 (reference)")
    value_slow, value_fast = Figure("RSA value alone, dkimpy"), Figure("RSA value alone, OpenSSL")
    first = Figure("rsa-sha256, OpenSSL, first use of a key")
    parse = Figure("dkimpy's PEM parse (in both, per signature)")
    for warm in messages[:3]:  # imports, the key cache, the allocator
        dkim_sign.sign(warm, [rsa_key])
        dkim_sign.sign(warm, [ed_key])
    per_round = max(1, n // rounds)
    for start in range(0, n, per_round):
        batch = range(start, min(n, start + per_round))
        with openssl_rsa.dkimpy_arithmetic():
            for i in batch:
                slow.time(lambda i=i: dkim_sign.sign(messages[i], [rsa_key]))
                value_slow.time(lambda i=i: dkim.crypto.RSASSA_PKCS1_v1_5_sign(digests[i], parsed))
        for i in batch:
            fast.time(lambda i=i: dkim_sign.sign(messages[i], [rsa_key]))
            value_fast.time(lambda i=i: openssl_rsa.rsassa_pkcs1_v1_5_sign(digests[i], parsed))
            ed.time(lambda i=i: dkim_sign.sign(messages[i], [ed_key]))
            parse.time(lambda: dkim.crypto.parse_pem_private_key(rsa_key.private))
        openssl_rsa._private_key.cache_clear()
        first.time(lambda start=start: dkim_sign.sign(messages[start], [rsa_key]))
    return [slow, fast, ed, value_slow, value_fast, parse, first]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400, help="messages (signatures per line)")
    parser.add_argument("--rounds", type=int, default=8, help="alternations of the two sides")
    parser.add_argument("--size", type=int, default=10 * KIB, help="bytes per message")
    args = parser.parse_args()
    figures = run(args.n, args.rounds, args.size)
    base = figures[0].cpu_ms
    print(
        f"load average {os.getloadavg()[0]:.2f}; {args.size} B messages, 2048-bit RSA; "
        f"dkimpy {openssl_rsa.dkimpy_version()}; ratio = CPU median / dkimpy arithmetic's"
    )
    print(f"{'':44} {'count':>6} {'CPU ms':>8} {'mean':>8} {'wall ms':>8} {'ratio':>7}")
    for f in figures:
        print(
            f"{f.name:44} {len(f.cpu):6d} {f.cpu_ms:8.3f} {statistics.fmean(f.cpu) * 1e3:8.3f} "
            f"{statistics.median(f.wall) * 1e3:8.3f} {f.cpu_ms / base:7.3f}"
        )
    print(
        f"speed-up of a signature (dkimpy / OpenSSL, CPU medians): {base / figures[1].cpu_ms:.1f}x"
    )


if __name__ == "__main__":
    main()
