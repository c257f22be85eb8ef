"""`sealgate` command line: one entry point for init, serve, users, keys, queue and more."""

from __future__ import annotations

# Importing a command module registers its commands on `cli`.
from sealgate.cli import (  # noqa: F401
    accounts,
    backup,
    dns_records,
    init,
    keys,
    mailbox,
    purge,
    queue,
    serve,
)
from sealgate.cli.base import cli


def main() -> None:
    cli(prog_name="sealgate")
