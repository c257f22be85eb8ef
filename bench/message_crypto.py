"""Per-message OpenPGP cost: pgpy (before issue 15) against Sequoia (now), side by side.

Both sides do the same work on the same keys, in the same run, alternating:

- gateway step: parse the sender's unwrapped secret key, sign, encrypt to two
  keys (recipient and sender, one ciphertext doubling as the Sent copy), armor.
  pgpy: the code keystore.pgp ran before (PGPKey.from_blob, sign, encrypt per
  key under one session key; the armor is the project's, as it was then);
  Sequoia: `keystore.messages.signing_key`
  and `encrypt`, then `keystore.packets.armor`.
- read: decrypt a signed stored message and verify it against the sender's key.
  pgpy in the server's own thread (before issue 10: unbounded); Sequoia in
  process (`messages.open_message`, the same function the sandbox runs) and in the
  sandbox (`keystore.untrusted.decrypt_message`, what a read costs now).

Printed per size: median milliseconds of each and the ratio pgpy / Sequoia.

    python bench/message_crypto.py [--n 31] [--sizes 10240,1048576]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
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

import pgpy  # noqa: E402
from pgpy.constants import CompressionAlgorithm, HashAlgorithm, SymmetricKeyAlgorithm  # noqa: E402

from keystore import messages, packets, pgp, untrusted  # noqa: E402


def median_ms(fn: Callable[[], object], n: int) -> float:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


# --- the baseline: pgpy, as keystore.pgp did it before issue 15 -------------------------


def pgpy_gateway_step(secret: bytes, recipients: list[pgp.PublicKey], data: bytes) -> bytes:
    key, _ = pgpy.PGPKey.from_blob(secret)
    message = pgpy.PGPMessage.new(data, format="b", compression=CompressionAlgorithm.Uncompressed)
    message |= key.sign(message, hash=HashAlgorithm.SHA512)
    session_key = SymmetricKeyAlgorithm.AES256.gen_key()
    for recipient in recipients:
        message = recipient._key.encrypt(
            message, cipher=SymmetricKeyAlgorithm.AES256, sessionkey=session_key
        )
    return packets.armor(bytes(message))  # pgpy's own armor computes its CRC in Python


def pgpy_read(message: bytes, secret: pgp.SecretKey, sender: pgp.PublicKey) -> bytes:
    inner = secret._key.decrypt(pgpy.PGPMessage.from_blob(message))
    assert sender._key.verify(inner)
    return bytes(inner.message)


# --- Sequoia, as keystore.messages does it now -------------------------------------------


def sequoia_gateway_step(
    secret: bytes, signer_public: pgp.PublicKey, recipients: list[pgp.PublicKey], data: bytes
) -> bytes:
    signer = messages.signing_key(secret, signer_public)
    return packets.armor(messages.encrypt(data, recipients, signer))


def sequoia_read_in_process(message: bytes, secret: bytes, sender: bytes) -> bytes:
    opened = messages.open_message(message, [secret], [sender])
    assert opened.valid_signer is not None
    return opened.data


def sequoia_read_sandboxed(message: bytes, secret: bytes, sender: bytes) -> bytes:
    opened = untrusted.decrypt_message(
        message,
        [secret],
        [sender],
        untrusted.STORED_MESSAGE_BUDGET,
        max_output=untrusted.STORED_MESSAGE_MAX_OUTPUT,
    )
    assert opened.valid_signer is not None
    return opened.data


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--n", type=int, default=31)
    parser.add_argument("--sizes", default="10240,1048576")
    args = parser.parse_args()
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    alice, bob = pgp.generate("alice@bench.test", now), pgp.generate("bob@bench.test", now)
    alice_secret, bob_secret = pgp.secret_key_bytes(alice), pgp.secret_key_bytes(bob)
    recipients = [bob.public, alice.public]
    alice_public = alice.public
    warm = messages.encrypt(b"warm", [bob.public], None)
    sequoia_read_in_process(
        messages.encrypt(b"warm", [bob.public], messages.signing_key(alice_secret, alice_public)),
        bob_secret,
        alice_public.to_bytes(),
    )
    untrusted.decrypt_message(
        warm, [bob_secret], [], untrusted.STORED_MESSAGE_BUDGET, max_output=64
    )

    print(f"load average {os.getloadavg()[0]:.2f}; median of {args.n}; ratio = pgpy / Sequoia")
    header = f"{'step':<44}{'pgpy ms':>10}{'Sequoia ms':>12}{'ratio':>8}"
    print(header)
    for size in (int(s) for s in args.sizes.split(",")):
        data = os.urandom(size)
        label = f"{size // 1024} KiB"
        before = median_ms(lambda d=data: pgpy_gateway_step(alice_secret, recipients, d), args.n)
        after = median_ms(
            lambda d=data: sequoia_gateway_step(alice_secret, alice_public, recipients, d), args.n
        )
        step = f"gateway step (parse, sign, 2 keys, armor), {label}"
        print(f"{step:<44}{before:>10.2f}{after:>12.2f}{before / after:>8.1f}")

        alice_cert = alice_public.to_bytes()
        stored = messages.encrypt(
            data, [bob.public], messages.signing_key(alice_secret, alice_public)
        )
        assert pgpy_read(stored, bob, alice_public) == data
        assert sequoia_read_sandboxed(stored, bob_secret, alice_cert) == data
        before = median_ms(lambda m=stored: pgpy_read(m, bob, alice_public), args.n)
        inproc = median_ms(
            lambda m=stored, c=alice_cert: sequoia_read_in_process(m, bob_secret, c), args.n
        )
        boxed = median_ms(
            lambda m=stored, c=alice_cert: sequoia_read_sandboxed(m, bob_secret, c), args.n
        )
        step = f"read: decrypt + verify in process, {label}"
        print(f"{step:<44}{before:>10.2f}{inproc:>12.2f}{before / inproc:>8.1f}")
        step = f"read: Sequoia in the sandbox, {label}"
        print(f"{step:<44}{before:>10.2f}{boxed:>12.2f}{before / boxed:>8.1f}")


if __name__ == "__main__":
    main()
