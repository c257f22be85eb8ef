"""Keystore costs per operation, with Sequoia's key generation as the baseline.

Measured in one run, on one database (a throwaway SQLite file, or --database-url):

- keygen (pgpy): `keystore.pgp.generate`, Ed25519 + Curve25519 ECDH subkey;
- keygen (pysequoia): `Tsk.generate` with the same cipher suite (the baseline);
- get_or_create: keygen + AES-256-GCM wrap + insert + commit (a first key);
- unwrap+parse: `store.unlock_row` (AES-GCM open, then pgpy parses the secret key);
- public-key lookup, uncached: current-key query + pgpy parse (cache cleared each time);
- public-key lookup, cached: current-key query + cache hit (what a message costs).

    python bench/keystore.py [--n 200] [--database-url URL]

Printed per operation: median and mean in microseconds, operations per second,
and the ratio of the median to the baseline's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import secrets
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# This file is named like the package it measures: run as a script, its own
# directory comes first on sys.path and would shadow `keystore`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

# pgpy's own deprecation and "TODO" notices; see pyproject.toml.
warnings.filterwarnings("ignore", module="pgpy")
warnings.filterwarnings("ignore", message=".*has been moved")

import pysequoia  # noqa: E402
import sqlalchemy.orm as so  # noqa: E402

from gateway import db  # noqa: E402
from keystore import pgp, store  # noqa: E402
from keystore.masterkey import MasterKeyRing  # noqa: E402


@dataclass
class Figure:
    name: str
    samples: list[float]

    @property
    def median_us(self) -> float:
        return statistics.median(self.samples) * 1e6

    @property
    def mean_us(self) -> float:
        return statistics.fmean(self.samples) * 1e6


def measure(name: str, n: int, op: Callable[[int], object], warmup: int = 5) -> Figure:
    for i in range(warmup):
        op(-1 - i)
    samples = []
    for i in range(n):
        start = time.perf_counter()
        op(i)
        samples.append(time.perf_counter() - start)
    return Figure(name, samples)


def no_events(session: so.Session, action: str, target: str, detail: str) -> None:
    """The benchmark measures key work, not audit rows."""


def run(n: int, database_url: str | None) -> list[Figure]:
    now = dt.datetime.now(dt.UTC)
    ring = MasterKeyRing.generate()
    run_id = secrets.token_hex(4)  # fresh addresses, also on a reused database
    with tempfile.TemporaryDirectory() as tmp:
        engine = db.create_engine(database_url or f"sqlite:///{Path(tmp) / 'bench.db'}")
        db.migrate(engine)
        sessions = db.session_factory(engine)
        figures: list[Figure] = []

        figures.append(
            measure(
                "keygen (pysequoia, baseline)",
                n,
                lambda i: pysequoia.Tsk.generate(
                    f"<q{i}@bench.test>",
                    profile=pysequoia.Profile.RFC4880,
                    cipher_suite=pysequoia.CipherSuite.Cv25519,
                ),
            )
        )
        figures.append(measure("keygen (pgpy)", n, lambda i: pgp.generate(f"g{i}@bench.test", now)))

        def create(i: int) -> None:
            with sessions.begin() as session:
                store.get_or_create(
                    session, ring, f"user{i}-{run_id}@bench.test", now, events=no_events
                )

        figures.append(measure("get_or_create (keygen+wrap+commit)", n, create))

        with sessions() as session:
            rows = [r for r in store.list_keys(session) if run_id in r.address]
            for row in rows:
                _ = row.wrapped_secret  # load the deferred column outside the timing
            by_index = {i: rows[i % len(rows)] for i in range(-10, n)}
            figures.append(
                measure("unwrap+parse secret key", n, lambda i: store.unlock_row(ring, by_index[i]))
            )

            addresses = {i: by_index[i].address for i in by_index}

            def uncached(i: int) -> None:
                store.public_key_cache.clear()
                store.public_key(session, addresses[i])

            figures.append(measure("public-key lookup, uncached", n, uncached))
            for address in addresses.values():
                store.public_key(session, address)
            figures.append(
                measure(
                    "public-key lookup, cached",
                    n,
                    lambda i: store.public_key(session, addresses[i]),
                )
            )
        engine.dispose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="operations per figure")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    figures = run(args.n, args.database_url)
    baseline = figures[0].median_us
    print(f"{args.n} operations each; ratio = median / median of pysequoia keygen")
    print(f"{'operation':38} {'median us':>10} {'mean us':>10} {'ops/s':>9} {'ratio':>7}")
    for f in figures:
        print(
            f"{f.name:38} {f.median_us:10.1f} {f.mean_us:10.1f}"
            f" {1e6 / f.median_us:9.0f} {f.median_us / baseline:7.2f}"
        )


if __name__ == "__main__":
    main()
