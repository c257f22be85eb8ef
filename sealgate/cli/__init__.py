"""`sealgate` command line: one entry point for init, serve, users, keys, queue and more."""

from __future__ import annotations

from sealgate.cli.base import cli
from sealgate.cli import accounts, init, keys, serve  # noqa: F401  (registers commands)
from sealgate.cli import mailbox, queue  # noqa: F401  (registers commands)


def main() -> None:
    cli(prog_name="sealgate")
