"""What bounded decryption of stored mail costs: the sandbox against the same decryption in process.

Every read of stored OpenPGP (webmail view, download, reply, drafts) decrypts in a
child forked from the zygote of keystore.untrusted, with an output cap; the
baseline is the same Sequoia call (`messages.open_message`) in the caller's own
thread, unbounded. (Before issue 15 both sides were pgpy; bench/message_crypto.py
sets pgpy against Sequoia.) Both open the same signed messages, same key, in the
same run; printed per size: median milliseconds of each and their ratio. The last
row is a 1 GiB compression bomb, which the baseline is not asked to open.

    python bench/stored_read.py [--n 9]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore", module="pgpy")
warnings.filterwarnings("ignore", message=".*has been moved")

from keystore import messages, pgp, untrusted  # noqa: E402
from tests.security.bombs import compression_bomb  # noqa: E402

MAX_OUTPUT = untrusted.STORED_MESSAGE_MAX_OUTPUT


def median_ms(fn: Callable[[], object], n: int) -> float:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def sandboxed(message: bytes, key: pgp.SecretKey) -> messages.Opened | str:
    try:
        return untrusted.decrypt_message(
            message,
            [pgp.secret_key_bytes(key)],
            [],
            untrusted.STORED_MESSAGE_BUDGET,
            max_output=MAX_OUTPUT,
        )
    except untrusted.UntrustedDataError as exc:
        return exc.kind


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--n", type=int, default=9)
    args = parser.parse_args()
    now = dt.datetime.now(dt.UTC)
    bob, alice = pgp.generate("bob@bench.test", now), pgp.generate("alice@bench.test", now)
    sandboxed(messages.encrypt(b"warm", [bob.public], None), bob)  # zygote up
    signer = messages.signing_key(pgp.secret_key_bytes(alice), alice.public)
    bob_secret = pgp.secret_key_bytes(bob)

    print(f"median of {args.n} reads; ratio = sandbox / in process")
    print(f"{'message':<28}{'in process ms':>15}{'sandbox ms':>12}{'ratio':>8}")
    for size in (10 * 1024, 1024 * 1024, 20 * 1024 * 1024):
        message = messages.encrypt(b"m" * size, [bob.public], signer)
        assert not isinstance(sandboxed(message, bob), str)
        before = median_ms(lambda m=message: messages.open_message(m, [bob_secret], []), args.n)
        after = median_ms(lambda m=message: sandboxed(m, bob), args.n)
        label = f"signed, {size // 1024} KiB"
        print(f"{label:<28}{before:>15.1f}{after:>12.1f}{after / before:>8.1f}")
    bomb = compression_bomb(bob.public, inflated=1024**3)
    assert sandboxed(bomb, bob) == "too-large"
    refused = median_ms(lambda: sandboxed(bomb, bob), args.n)
    print(f"{'1 GiB bomb (refused)':<28}{'-':>15}{refused:>12.1f}{'-':>8}")


if __name__ == "__main__":
    main()
