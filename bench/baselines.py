"""The baselines sealgate is measured against, each a bare aiosmtpd server in its own process.

- null: accepts every AUTH and every message and does nothing with it: the ceiling of
  the load (TLS, SMTP and socket work only).
- gpg: the same, but its DATA handler pipes each message through one `gpg --encrypt`
  process to the recipient's public key and keeps the armored output in memory: what
  a content filter bolted onto an MTA costs for the encryption alone (no signature,
  no storage). gpg is told not to take its lock files, which concurrent runs on one
  home otherwise queue on.

Both use sealgate's own TLS context (gateway.tls.server_context) on a STARTTLS
listener with STARTTLS and AUTH required, as sealgate's submission port does. Run by
bench/harness.py, which reads the "ready port=N" line:

    python bench/baselines.py {null,gpg} CERT KEY [--gpg-home DIR --recipient ADDR]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import free_port
from gateway.tls import server_context

MAX_SIZE = 25 * 1024 * 1024  # sealgate's default [smtp] max_message_size


class NullHandler:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        return "250 OK"


class GpgPerMessage:
    def __init__(self, home: Path, recipient: str) -> None:
        self.home = home
        self.recipient = recipient
        self.kept: list[bytes] = []  # the last few outputs, so the work cannot be skipped

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        proc = await asyncio.create_subprocess_exec(
            "gpg",
            "--homedir",
            str(self.home),
            "--batch",
            "--quiet",
            "--trust-model",
            "always",
            # Concurrent gpg processes on one home otherwise queue on its lock files
            # (random_seed above all: 4 clients ran at a sixth of the serial rate).
            "--no-random-seed-file",
            "--lock-never",
            "--no-auto-check-trustdb",
            "--armor",
            "--encrypt",
            "--recipient",
            self.recipient,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        out, _ = await proc.communicate(envelope.original_content)
        if proc.returncode != 0 or not out:
            return "451 4.3.0 gpg failed"
        self.kept = [*self.kept[-3:], out]
        return "250 OK"


# aiosmtpd logs a warning about its own legacy attribute on every AUTH through an
# authenticator; nothing else of its log matters here.
logging.getLogger("mail.log").setLevel(logging.ERROR)


def accept_any(*_args: Any) -> AuthResult:
    return AuthResult(success=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("kind", choices=["null", "gpg"])
    parser.add_argument("cert", type=Path)
    parser.add_argument("key", type=Path)
    parser.add_argument("--gpg-home", type=Path)
    parser.add_argument("--recipient")
    args = parser.parse_args()
    if args.kind == "gpg" and not (args.gpg_home and args.recipient):
        parser.error("gpg needs --gpg-home and --recipient")
    handler: Any = (
        GpgPerMessage(args.gpg_home, args.recipient) if args.kind == "gpg" else NullHandler()
    )
    port = free_port()  # aiosmtpd's Controller cannot bind port 0 itself
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        tls_context=server_context(args.cert, args.key),
        require_starttls=True,
        auth_required=True,
        authenticator=accept_any,
        data_size_limit=MAX_SIZE,
        decode_data=False,
        enable_SMTPUTF8=True,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    controller.start()
    print(f"ready port={port}", flush=True)
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
