"""OpenPGP data from outside, parsed in a child process with a time and memory budget.

pgpy is not safe on hostile input: its armor regular expression backtracks for
hours on a couple of hundred bytes (PGPy issue #466), and it inflates compressed
packets without any limit. A server thread that called it directly could be held
forever or take the whole machine's memory. So every parse of outside data runs
in a fresh child process:

- the input is size-limited before anything looks at it;
- the child caps its own address space (RLIMIT_AS) and CPU time (RLIMIT_CPU), may
  not write files, and is killed when the wall-clock budget runs out;
- the answer comes back as JSON of bounded length, never as a pickle, so even a
  child that pgpy's bugs had taken over could not run code in the caller.

Children are forked from a multiprocessing fork server that has pgpy imported
already: a parse costs about 11 ms of process start-up (a `python -m` subprocess
per parse costs about 180 ms, nearly all of it importing pgpy and cryptography),
and a fresh process per parse means no state survives from one input to the next.
At most `MAX_PARALLEL` children run at once; callers beyond that wait their turn.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import resource
import signal
import threading
import warnings
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from typing import Any, Literal

from keystore import pgp

MAX_PARALLEL = max(2, min(8, os.cpu_count() or 2))
MIN_MEMORY_MB = 64
# How long a finished or killed child may take to be reaped.
REAP_SECONDS = 5.0

FailureKind = Literal["too-large", "empty", "timeout", "memory", "invalid", "worker"]


@dataclass(frozen=True)
class Budget:
    """What one parse may use: input bytes, wall-clock seconds, address space."""

    max_bytes: int
    timeout: float
    memory_mb: int

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.timeout <= 0 or self.memory_mb < MIN_MEMORY_MB:
            raise ValueError(
                f"a parse budget needs max_bytes >= 1, timeout > 0, memory_mb >= {MIN_MEMORY_MB}"
            )

    @property
    def reply_limit(self) -> int:
        # Every accepted key is smaller than the input; base64 and JSON add a third.
        return 4 * self.max_bytes + 64 * 1024


class UntrustedDataError(ValueError):
    """The input as a whole was refused; the message is safe to show."""

    def __init__(self, kind: FailureKind, message: str) -> None:
        super().__init__(message)
        self.kind: FailureKind = kind


_slots = threading.BoundedSemaphore(MAX_PARALLEL)
_context_lock = threading.Lock()
_context: BaseContext | None = None


def _mp_context() -> BaseContext:
    global _context
    with _context_lock:
        if _context is None:
            if "forkserver" in multiprocessing.get_all_start_methods():
                ctx: Any = multiprocessing.get_context("forkserver")
                # "__main__" first: the fork server imports the program's main module
                # once, so each child need not import it again before it starts.
                ctx.set_forkserver_preload(["__main__", __name__])
            else:  # pragma: no cover  (not Linux)
                ctx = multiprocessing.get_context("spawn")
            _context = ctx
        return _context


def vet_keys(
    data: bytes, now: dt.datetime, budget: Budget, *, address: str | None = None
) -> pgp.KeyVetting:
    """Sort the keys in outside `data` into usable and refused (see `pgp.vet_public_keys`).

    Raises `UntrustedDataError` when the input is refused as a whole: too large,
    empty, no key in it, or over the time or memory budget.
    """
    if len(data) > budget.max_bytes:
        raise UntrustedDataError(
            "too-large",
            f"the key data is too large ({len(data)} bytes; the limit is {budget.max_bytes})",
        )
    if not data.strip():
        raise UntrustedDataError("empty", "no key data")
    request = {"op": "keys", "now": now.astimezone(dt.UTC).isoformat(), "address": address}
    return _decode_vetting(_run(request, data, budget))


def _run(request: dict[str, Any], data: bytes, budget: Budget) -> dict[str, Any]:
    with _slots:
        ctx: Any = _mp_context()
        ours, theirs = ctx.Pipe(duplex=True)
        cpu_seconds = math.ceil(budget.timeout) + 1
        child = ctx.Process(
            target=_child_main,
            args=(theirs, json.dumps(request), budget.memory_mb, cpu_seconds, budget.max_bytes),
            name="sealgate-untrusted-parse",
            daemon=True,
        )
        try:
            try:
                child.start()
            except OSError:
                raise UntrustedDataError("worker", "the parser could not be started") from None
            finally:
                theirs.close()
            raw = _exchange(ours, child, data, budget)
        finally:
            ours.close()
    try:
        reply = json.loads(raw)
    except ValueError:
        raise UntrustedDataError("worker", "the parser's answer was malformed") from None
    if not isinstance(reply, dict):
        raise UntrustedDataError("worker", "the parser's answer was malformed")
    error = reply.get("error")
    if error is not None:
        raise _failure(str(error), budget, str(reply.get("message", "")))
    return reply


def _exchange(
    conn: multiprocessing.connection.Connection, child: Any, data: bytes, budget: Budget
) -> bytes:
    """Send the input, wait at most the budget for the answer; the child never outlives this."""
    try:
        conn.send_bytes(data)
        if not conn.poll(budget.timeout):
            raise _failure("timeout", budget, "")
        return conn.recv_bytes(budget.reply_limit)
    except (EOFError, BrokenPipeError, ConnectionResetError):
        child.join(REAP_SECONDS)
        raise _death(child.exitcode, budget) from None
    except OSError:
        raise UntrustedDataError("worker", "the parser's answer was too long") from None
    finally:
        if child.is_alive():
            child.kill()
        child.join(REAP_SECONDS)


def _death(exitcode: int | None, budget: Budget) -> UntrustedDataError:
    if exitcode in (-signal.SIGXCPU, -signal.SIGKILL):
        return _failure("timeout", budget, "")
    return UntrustedDataError("worker", f"the parser stopped unexpectedly (exit {exitcode})")


def _failure(kind: str, budget: Budget, message: str) -> UntrustedDataError:
    if kind == "timeout":
        return UntrustedDataError(
            "timeout", f"parsing took longer than {budget.timeout:g} s and was stopped"
        )
    if kind == "memory":
        return UntrustedDataError(
            "memory", f"parsing needed more than {budget.memory_mb} MB and was stopped"
        )
    if kind == "invalid":
        return UntrustedDataError("invalid", message[:200] or "not a valid OpenPGP key")
    return UntrustedDataError("worker", "the parser failed")


def _decode_vetting(reply: dict[str, Any]) -> pgp.KeyVetting:
    try:
        accepted = tuple(
            pgp.VettedKey(
                address=str(item["address"]),
                fingerprint=str(item["fingerprint"]),
                subkey_id=str(item["subkey_id"]),
                created=dt.datetime.fromisoformat(item["created"]),
                expires_at=(
                    dt.datetime.fromisoformat(item["expires_at"]) if item["expires_at"] else None
                ),
                data=base64.b64decode(item["data"], validate=True),
            )
            for item in reply["accepted"]
        )
        rejected = tuple(
            pgp.RejectedKey(
                fingerprint=str(item["fingerprint"]),
                addresses=tuple(str(a) for a in item["addresses"]),
                code=item["code"],
                reason=str(item["reason"]),
            )
            for item in reply["rejected"]
        )
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise UntrustedDataError("worker", "the parser's answer was malformed") from None
    return pgp.KeyVetting(accepted, rejected)


# --- the child ------------------------------------------------------------------------

_MEMORY_REPLY = b'{"error": "memory"}'


def _limit(memory_mb: int, cpu_seconds: int) -> None:
    memory = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _child_main(
    conn: multiprocessing.connection.Connection,
    request_json: str,
    memory_mb: int,
    cpu_seconds: int,
    max_bytes: int,
) -> None:
    """Entry point of the child: limit itself, read the input, answer in JSON, exit."""
    _limit(memory_mb, cpu_seconds)
    warnings.simplefilter("ignore")
    try:
        data = conn.recv_bytes(max_bytes)
        reply = _answer(json.loads(request_json), data)
    except MemoryError:
        reply = _MEMORY_REPLY
    except Exception:  # noqa: BLE001  (anything else: one opaque failure)
        reply = b'{"error": "worker"}'
    try:
        conn.send_bytes(reply)
    finally:
        conn.close()


def _answer(request: dict[str, Any], data: bytes) -> bytes:
    if request.get("op") != "keys":
        return b'{"error": "worker"}'
    now = dt.datetime.fromisoformat(request["now"])
    try:
        vetting = pgp.vet_public_keys(data, now, address=request.get("address"))
    except pgp.PgpError as exc:
        return json.dumps({"error": "invalid", "message": str(exc)}).encode()
    return json.dumps(
        {
            "accepted": [
                {
                    "address": v.address,
                    "fingerprint": v.fingerprint,
                    "subkey_id": v.subkey_id,
                    "created": v.created.isoformat(),
                    "expires_at": v.expires_at.isoformat() if v.expires_at else None,
                    "data": base64.b64encode(v.data).decode("ascii"),
                }
                for v in vetting.accepted
            ],
            "rejected": [
                {
                    "fingerprint": r.fingerprint,
                    "addresses": list(r.addresses),
                    "code": r.code,
                    "reason": r.reason,
                }
                for r in vetting.rejected
            ],
        }
    ).encode()
