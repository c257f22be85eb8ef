"""OpenPGP data from outside, parsed in a child process with a time and memory budget.

pgpy is not safe on hostile input: its armor regular expression backtracks for
hours on a couple of hundred bytes (PGPy issue #466), and it inflates compressed
packets without any limit. A server thread that called it directly could be held
forever or take the whole machine's memory. So every parse of outside data runs
in a fresh child process:

- the input is size-limited before anything looks at it;
- the child caps its own address space (RLIMIT_AS) and CPU time (RLIMIT_CPU), may
  not write files, and is killed when the wall-clock budget runs out;
- the answer comes back as length-prefixed JSON of bounded size, never a pickle,
  so even a child that pgpy's bugs had taken over could not run code in the caller.

The children come from a zygote: one small helper process per server process
(`python -I`, importing only this module, pgpy and pysequoia), which forks a child for each
parse. A parse so costs a fork of a 40 MB process (a few milliseconds) instead
of a new interpreter importing pgpy and cryptography (about 150 ms). The stock
multiprocessing fork server was measured and dropped: on Python 3.11 it re-runs
the program's main module in every child (its `__main__` preload is broken), which
for `sealgate` costs about two seconds per parse. The zygote reaps its children
itself (SIGCHLD ignored); it exits when the server closes the control socket.

Stored mail is decrypted here too, by Sequoia (`keystore.messages.open_message`):
the child gets the message, the unwrapped secret keys it names and the expected
sender's certificates over its socket (never through the zygote, never a pickle),
and exits after one message, so no child ever holds two users' keys. Sequoia has
no output bound of its own; the child sets its address space to what a message of
the largest allowed output needs, so a compression bomb ends the child (Rust
aborts when an allocation is refused), which the caller reports as too large.

Each request travels on its own socket pair, the child's end passed to the zygote
with SCM_RIGHTS, so concurrent parses never share a channel. At most
`MAX_PARALLEL` children run at once; callers beyond that wait their turn.
"""

from __future__ import annotations

import atexit
import base64
import binascii
import contextlib
import datetime as dt
import json
import math
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from keystore import bzip2_messages, messages, pgp

MAX_PARALLEL = max(2, min(8, os.cpu_count() or 2))
MIN_MEMORY_MB = 64
LENGTH = struct.Struct(">I")
MAX_HEADER = 4096

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


# Decrypting one stored message when the caller names no bounds: the defaults of the
# `[limits]` settings (gateway.settings.LimitsSettings; a test keeps them equal).
STORED_MESSAGE_MAX_OUTPUT = 64 * 1024 * 1024
STORED_MESSAGE_BUDGET = Budget(
    max_bytes=STORED_MESSAGE_MAX_OUTPUT * 4 // 3 + 64 * 1024, timeout=10.0, memory_mb=1024
)


class UntrustedDataError(ValueError):
    """The input as a whole was refused; the message is safe to show."""

    def __init__(self, kind: FailureKind, message: str) -> None:
        super().__init__(message)
        self.kind: FailureKind = kind


_slots = threading.BoundedSemaphore(MAX_PARALLEL)


class _Zygote:
    """The helper that forks parse children; started on first use, restarted if it died."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None

    def _start(self) -> socket.socket:
        self._stop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        root = str(Path(__file__).resolve().parents[1])
        code = (
            f"import sys; sys.path.insert(0, {root!r});"
            f" from keystore.untrusted import _zygote_main; _zygote_main({theirs.fileno()})"
        )
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-c", code],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            theirs.close()
        self._control = ours
        return ours

    def _stop(self) -> None:
        if self._control is not None:
            self._control.close()  # the zygote sees the end of its input and exits
            self._control = None
        if self._process is not None:
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def close(self) -> None:
        with self._lock:
            self._stop()

    def fork(self, header: bytes, channel: socket.socket) -> int:
        """A new child reading its request from `channel`; returns its pid."""
        with self._lock:
            for _attempt in range(2):
                control = self._control
                alive = self._process is not None and self._process.poll() is None
                try:
                    if control is None or not alive:
                        control = self._start()
                    socket.send_fds(control, [header], [channel.fileno()])
                    control.settimeout(30)
                    answer = control.recv(LENGTH.size)
                    if len(answer) == LENGTH.size:
                        return int(LENGTH.unpack(answer)[0])
                except OSError:
                    pass
                self._stop()
        raise UntrustedDataError("worker", "the parser could not be started")

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None


_zygote = _Zygote()
atexit.register(_zygote.close)


def zygote_pid() -> int | None:
    """The pid of the process that forks parse children (None before the first parse)."""
    return _zygote.pid


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
            # A caller may read only one byte past the limit: say "more than", not a size.
            f"the key data is too large (more than {budget.max_bytes} bytes)",
        )
    if not data.strip():
        raise UntrustedDataError("empty", "no key data")
    request = {"op": "keys", "now": now.astimezone(dt.UTC).isoformat(), "address": address}
    return _decode_vetting(_run(request, data, budget))


def decrypt_message(
    message: bytes,
    secret_keys: Sequence[bytes],
    senders: Sequence[bytes],
    budget: Budget,
    *,
    max_output: int,
) -> messages.Opened:
    """Open a stored OpenPGP message (from outside) in a child, with whichever of the
    unwrapped `secret_keys` opens it, verifying signatures against the `senders`
    certificates (`messages.open_message`).

    The output is at most `max_output` bytes and the child is held to the budget's
    time and memory. Raises `UntrustedDataError`: "too-large" past the input or
    output limit, "timeout" or "memory" past the budget, "invalid" for a message
    that does not decrypt.
    """
    if len(message) > budget.max_bytes:
        raise UntrustedDataError(
            "too-large",
            f"the message is too large (more than {budget.max_bytes} bytes)",
        )
    if max_output < 1:
        raise ValueError("max_output must be at least 1")
    if any(len(k) > pgp.MAX_KEY_BYTES for k in (*secret_keys, *senders)):
        raise UntrustedDataError("too-large", "a key is too large")
    request = {
        "op": "decrypt",
        "keys": len(secret_keys),
        "senders": len(senders),
        "max_output": max_output,
    }
    reply, payload = _run_with_payload(
        request, [*secret_keys, *senders, message], budget, max_output, died=_TOO_LARGE
    )
    try:
        valid = reply["valid"]
        issuers = frozenset(str(i) for i in reply["issuers"])
    except (KeyError, TypeError, ValueError):
        raise UntrustedDataError("worker", "the parser's answer was malformed") from None
    return messages.Opened(payload, str(valid) if valid else None, issuers)


def _run(request: dict[str, Any], data: bytes, budget: Budget) -> dict[str, Any]:
    return _run_with_payload(request, [data], budget, 0)[0]


_TOO_LARGE = "the message is too large once decompressed"


def _run_with_payload(
    request: dict[str, Any],
    parts: Sequence[bytes],
    budget: Budget,
    payload_limit: int,
    *,
    died: str | None = None,
) -> tuple[dict[str, Any], bytes]:
    """The child's JSON answer and, for requests that have one, the binary payload
    that follows it (at most `payload_limit` bytes). `parts` go to the child one
    after the other, each sized in the header, so none is copied into one buffer.

    With `died`, a child that ended without an answer ran out of the address
    space it gave itself, and that is reported as "too-large" with this text.
    """
    header = json.dumps(
        {
            **request,
            "sizes": [len(p) for p in parts],
            "memory_mb": budget.memory_mb,
            "cpu_seconds": math.ceil(budget.timeout) + 1,
            "max_bytes": budget.max_bytes,
        }
    ).encode()
    with _slots:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                pid = _zygote.fork(header, theirs)
            finally:
                theirs.close()
            try:
                raw, payload = _exchange(ours, pid, parts, budget, payload_limit)
            except UntrustedDataError as exc:
                if died is not None and exc.kind == "worker":
                    raise UntrustedDataError("too-large", died) from None
                raise
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
    if payload_limit and payload is None:
        raise UntrustedDataError("worker", "the parser's answer was malformed")
    return reply, payload or b""


def _exchange(
    channel: socket.socket,
    pid: int,
    parts: Sequence[bytes],
    budget: Budget,
    payload_limit: int = 0,
) -> tuple[bytes, bytes | None]:
    """Send the input, wait at most the budget for the answer; kill the child otherwise.

    CPU time can only trail wall-clock time, so the wall-clock deadline always
    strikes first and RLIMIT_CPU is the backstop should the caller itself stall.
    """
    deadline = time.monotonic() + budget.timeout
    answered = False
    try:
        for part in parts:
            _send(channel, part, deadline)
        length = LENGTH.unpack(_receive(channel, LENGTH.size, deadline))[0]
        if length > budget.reply_limit:
            raise UntrustedDataError("worker", "the parser's answer was too long")
        reply = _receive(channel, length, deadline)
        payload = None
        if payload_limit and not reply.startswith(b'{"error"'):
            size = LENGTH.unpack(_receive(channel, LENGTH.size, deadline))[0]
            if size > payload_limit:
                raise UntrustedDataError("worker", "the parser's answer was too long")
            payload = _receive(channel, size, deadline)
        answered = True
        return reply, payload
    except TimeoutError:
        raise _failure("timeout", budget, "") from None
    except (EOFError, OSError):
        raise UntrustedDataError("worker", "the parser stopped unexpectedly") from None
    finally:
        if not answered:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _send(channel: socket.socket, payload: bytes, deadline: float) -> None:
    view = memoryview(payload)
    while view:
        channel.settimeout(_remaining(deadline))
        sent = channel.send(view)
        view = view[sent:]


def _receive(channel: socket.socket, size: int, deadline: float) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        channel.settimeout(_remaining(deadline))
        chunk = channel.recv(min(size - len(chunks), 1 << 20))
        if not chunk:
            raise EOFError
        chunks += chunk
    return bytes(chunks)


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


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
    if kind == "too-large":
        return UntrustedDataError("too-large", message[:200] or "the data is too large")
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


# --- the zygote and its children -------------------------------------------------------

_MEMORY_REPLY = b'{"error": "memory"}'
_WORKER_REPLY = b'{"error": "worker"}'
_TOO_LARGE_REPLY = json.dumps({"error": "too-large", "message": _TOO_LARGE}).encode()


def _limit(memory_mb: int, cpu_seconds: int) -> None:
    memory = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _zygote_main(control_fd: int) -> None:
    """Fork one child per request until the server closes the control socket."""
    warnings.simplefilter("ignore")
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    control = socket.socket(fileno=control_fd)
    while True:
        try:
            header, fds, _flags, _address = socket.recv_fds(control, MAX_HEADER, 1)
        except OSError:
            return
        if not header or not fds:
            return
        channel = fds[0]
        pid = os.fork()
        if pid == 0:  # the child
            control.close()
            _child_main(channel, header)  # never returns
        os.close(channel)
        try:
            control.sendall(LENGTH.pack(pid))
        except OSError:
            return


def _child_main(channel_fd: int, header: bytes) -> None:
    """Limit itself, read the input, answer in JSON, and leave without cleanup."""
    try:
        request = json.loads(header)
        _limit(int(request["memory_mb"]), int(request["cpu_seconds"]))
        channel = socket.socket(fileno=channel_fd)
        sizes = [int(size) for size in request["sizes"]]
        if not sizes or any(size > int(request["max_bytes"]) for size in sizes):
            raise ValueError("input over the limit")
        parts = [_read_exactly(channel, size) for size in sizes]
        payload: bytes | None = None
        try:
            if request.get("op") == "decrypt":
                reply, payload = _answer_decrypt(request, parts)
            else:
                reply = _answer(request, parts[0])
        except MemoryError:
            reply, payload = _MEMORY_REPLY, None
        channel.sendall(LENGTH.pack(len(reply)) + reply)
        if payload is not None:
            channel.sendall(LENGTH.pack(len(payload)))
            channel.sendall(payload)
    except BaseException:  # noqa: BLE001  (the child only ever answers or dies quietly)
        with contextlib.suppress(BaseException):
            os.write(channel_fd, LENGTH.pack(len(_WORKER_REPLY)) + _WORKER_REPLY)
    finally:
        os._exit(0)


def _read_exactly(channel: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = channel.recv(min(size - len(chunks), 1 << 20))
        if not chunk:
            raise EOFError
        chunks += chunk
    return bytes(chunks)


def _answer_decrypt(request: dict[str, Any], parts: list[bytes]) -> tuple[bytes, bytes | None]:
    keys, senders = int(request["keys"]), int(request["senders"])
    if len(parts) != keys + senders + 1:
        return _WORKER_REPLY, None
    message = parts[-1]
    max_output = int(request["max_output"])
    _limit_for_output(len(message), max_output, int(request["memory_mb"]))
    secret_keys, certificates = parts[:keys], parts[keys : keys + senders]
    try:
        try:
            opened = messages.open_message(message, secret_keys, certificates)
        except pgp.PgpError as exc:
            # Sequoia reads no BZip2: such a message is opened by the module for it.
            fallback = bzip2_messages.open_message(
                message, secret_keys, certificates, max_output=max_output
            )
            if fallback is None:
                return json.dumps({"error": "invalid", "message": str(exc)}).encode(), None
            opened = fallback
    except (MemoryError, bzip2_messages.OutputTooLarge):
        return _TOO_LARGE_REPLY, None
    if len(opened.data) > max_output:
        return _TOO_LARGE_REPLY, None
    reply = {"valid": opened.valid_signer, "issuers": sorted(opened.issuers)}
    return json.dumps(reply).encode(), opened.data


# What one decryption needs beyond the child as forked: the input, Sequoia's copy of
# it while parsing, its output buffer (which grows by doubling: up to twice the
# output) and the bytes handed back to Python, with room for Sequoia's own buffers.
_DECRYPT_SLACK = 64 * 1024 * 1024


def _limit_for_output(input_size: int, max_output: int, memory_mb: int) -> None:
    """Shrink the address space to what a message of `max_output` bytes needs (never
    beyond the budget), so running out of it means the output is larger than that."""
    page = os.sysconf("SC_PAGE_SIZE")
    with open("/proc/self/statm") as statm:
        mapped = int(statm.read().split()[0]) * page
    need = mapped + 2 * input_size + 4 * max_output + _DECRYPT_SLACK
    limit = min(need, memory_mb * 1024 * 1024)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


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
