"""The root command group and the helpers every subcommand shares.

Importing this module must stay cheap (click, the standard library and
gateway.settings only): `sealgate --help` imports every command module, so the
database, OpenPGP, web and SMTP stacks are imported inside the functions that use
them (see sealgate/cli/__init__.py).
"""

from __future__ import annotations

import getpass
import os
import sys
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gateway.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    import sqlalchemy.orm as so

    from gateway.runtime import Runtime

CLI_ACTOR = "cli"
# The portal's minimum for a password a person chooses (webportal/account.py).
MIN_PASSWORD_LENGTH = 10


@dataclass
class CliState:
    data_dir: str | None
    _settings: Settings | None = None
    _runtime: Runtime | None = field(default=None, repr=False)
    # `sealgate backup` only reads: it may copy a database a newer release migrated.
    newer_schema_ok: bool = False

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_settings(self.data_dir)
            except SettingsError as exc:
                raise click.ClickException(f"configuration error: {exc}") from None
        return self._settings

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            import sqlalchemy as sa

            from gateway.runtime import Runtime

            try:
                self._runtime = Runtime.open(self.settings)
                stamp_cli_client(self._runtime)
            except (sa.exc.ArgumentError, ImportError) as exc:
                # A URL SQLAlchemy cannot parse, an unknown dialect, a driver that is
                # not installed. The URL may hold a password: name the key, not the value.
                raise click.ClickException(
                    f"configuration error: [database] url: not usable ({exc}); expected"
                    " e.g. postgresql+psycopg://user@host/db, or empty for SQLite"
                ) from None
        return self._runtime

    @property
    def data_dir_path(self) -> Path:
        return self.settings.data_dir

    def require_initialised(self) -> Runtime:
        missing = click.ClickException(
            f"{self.settings.data_dir} is not initialised (run `sealgate init` first)"
        )
        if not self.settings.data_dir.is_dir():
            raise missing
        runtime = self.runtime
        revisions = self.schema_revisions()
        if not revisions:
            raise missing
        if not self.newer_schema_ok:
            self.refuse_newer_schema(revisions)
        return runtime

    def refuse_newer_schema(self, revisions: frozenset[str]) -> None:
        """Refuse a database that a newer release migrated (a revision this code's
        migrations do not know): this code would misread it, and `init` cannot migrate
        it back. The way out is that release, or the backup taken before the upgrade."""
        import importlib.metadata

        from gateway import db

        unknown = sorted(db.unknown_revisions(revisions))
        if not unknown:
            return
        try:
            version = importlib.metadata.version("sealgate")
        except importlib.metadata.PackageNotFoundError:
            version = "(unknown version)"
        raise click.ClickException(
            f"the database of {self.settings.data_dir} was migrated by a newer sealgate"
            f" release (schema revision {', '.join(unknown)}, which sealgate {version} does"
            " not know): install that release again, or restore a backup made before the"
            " upgrade (`sealgate restore --force DIR`, docs/backup.md); nothing was changed"
        )

    def schema_revisions(self) -> frozenset[str]:
        """The database's schema revisions (none: not made yet); a database that does not
        open is one line saying why, for `init` as for every other command."""
        import sqlalchemy as sa

        from gateway import db

        try:
            return db.schema_revisions(self.runtime.engine)
        except sa.exc.OperationalError as exc:
            # The driver's first line says why (a read-only data dir, a refused
            # connection, a wrong password, no such database); it names no password.
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "no reason given"
            raise click.ClickException(
                f"cannot open the database of {self.settings.data_dir} ({reason});"
                " check [database] url, and that the data dir is writable"
            ) from None

    @contextmanager
    def transaction(self) -> Iterator[so.Session]:
        from gateway import db

        with db.transaction(self.require_initialised().sessions) as session:
            yield session


pass_state = click.make_pass_decorator(CliState)


def cli_client() -> str:
    """Who runs this command, for the audit log's client column.

    The console's events carry the admin's login and address; a command's would say
    only "cli", and several people with a shell on the host could not be told apart.
    """
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no $USER (a bare container)
        user = "unknown"
    return f"sealgate cli, os user {user} (uid {os.getuid()})"


def stamp_cli_client(runtime: Runtime) -> None:
    """Every session the command opens names its OS user on the events of `cli`.

    Commands pass the actor "cli" to shared functions (gateway.accounts, the keystore's
    events) that record by name; gateway.audit looks the client up in the session's info.
    """
    from gateway import audit

    info = dict(runtime.sessions.kw.get("info") or {})
    info[audit.CLIENT_KEY] = {CLI_ACTOR: ("", cli_client())}
    runtime.sessions.configure(info=info)


@click.group()
@click.version_option(package_name="sealgate", prog_name="sealgate", message="%(prog)s %(version)s")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Data directory (default: $SEALGATE_DATA_DIR, else ./sealgate-data).",
)
@click.pass_context
def cli(ctx: click.Context, data_dir: str | None) -> None:
    """sealgate: an end-to-end encrypted mail gateway."""
    ctx.obj = CliState(data_dir=data_dir)
    ctx.call_on_close(lambda: ctx.obj._runtime and ctx.obj._runtime.close())


def refused(exc: Exception) -> click.ClickException:
    """A refusal of the shared layer (gateway.admin, gateway.accounts) as the CLI says it.

    Their texts name no command: where the remedy depends on the front end (host the
    domain first, or allow an outside login), the CLI adds its command and option here,
    as the console adds its page and checkbox (webportal/admin/common.py).
    """
    # Imported here: an exception of theirs means they are loaded already.
    from gateway.accounts import DomainNotHosted
    from gateway.admin import NotHosted

    hint = ""
    if isinstance(exc, NotHosted) and exc.login:
        hint = (
            " (add the domain with `sealgate domain add`, or allow an outside login with"
            " --external-login)"
        )
    elif isinstance(exc, NotHosted | DomainNotHosted):
        hint = " (add it with `sealgate domain add`)"
    return click.ClickException(f"{exc}{hint}")


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")


def emit(as_json: bool, data: Any, text: str) -> None:
    import json

    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str) if as_json else text)


def password_option(fn: click.decorators.FC) -> click.decorators.FC:
    return click.option(
        "--password-stdin",
        is_flag=True,
        help="Read the password from standard input instead of generating one.",
    )(fn)


def obtain_password(from_stdin: bool) -> tuple[str, bool]:
    """The password to set, and whether it was generated (and so must be printed once)."""
    if from_stdin:
        value = sys.stdin.readline().rstrip("\r\n")
        if not value:
            raise click.ClickException("no password on standard input")
        if len(value) < MIN_PASSWORD_LENGTH:
            raise click.ClickException(
                f"the password is too short: at least {MIN_PASSWORD_LENGTH} characters"
            )
        if any(unicodedata.category(c) == "Cc" for c in value):
            # A NUL can never be sent in SMTP AUTH PLAIN (it separates the fields).
            raise click.ClickException("the password holds a control character (NUL, tab, ...)")
        return value, False
    from gateway.passwords import generate_password

    return generate_password(), True


def unreadable_tls_file(path: Path, exc: OSError) -> str:
    """One line for a TLS file this user cannot reach (or, for init, cannot write)."""
    import getpass

    problem = exc.strerror or str(exc)
    return (
        f"TLS file {exc.filename or path}: {problem} (running as {getpass.getuser()}, which"
        " must be able to read [smtp] tls_cert and tls_key: copy them into the data dir, as"
        " docs/deployment.md shows)"
    )
