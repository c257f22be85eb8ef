"""`sealgate` command line: one entry point for init, serve, users, keys, queue and more.

Adding commands: write a module `sealgate/cli/<area>.py` that decorates its
commands or groups with `@cli.command()` / `@cli.group()` (from `sealgate.cli.base`),
and add the module to the import line below. Importing a command module is what
registers its commands on `cli`.

Keep that import cheap, because every `sealgate` run (`--help` and `--version`
included) imports every command module: at the top of a command module import only
click, the standard library, `sealgate.cli.base` and other modules that import
nothing heavy (`gateway.settings`, `keystore.masterkey`). Import SQLAlchemy,
Alembic, pgpy, Flask, aiosmtpd, Redis and the gateway modules built on them inside
the command function that needs them (types under `if TYPE_CHECKING:`). Each
command needs a docstring (its help text) and each option a `help=`;
tests/sealgate/test_cli_help.py checks both and that `sealgate --help` loads none
of the heavy stack.
"""

from __future__ import annotations

import os

# Importing a command module registers its commands on `cli`.
from sealgate.cli import (  # noqa: F401
    accounts,
    admin,
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

# What sealgate writes (the database and its WAL, lock files, backups, TLS keys) is
# the owner's only, whatever umask the admin's shell or service manager left.
PRIVATE_UMASK = 0o077


def main() -> None:
    os.umask(PRIVATE_UMASK)
    cli(prog_name="sealgate")
