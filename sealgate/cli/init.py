"""`sealgate init`: a working data dir on a fresh machine, and nothing changed on a second run."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import click

from sealgate.cli.base import CLI_ACTOR, CliState, cli, pass_state, unreadable_tls_file

DEFAULT_DOMAIN = "example.test"


@cli.command()
@click.option(
    "--domain",
    "domain_name",
    default=DEFAULT_DOMAIN,
    show_default=True,
    help="The first hosted domain (skipped when an admin exists already).",
)
@click.option("--admin", "admin_email", default=None, help="Default: admin@DOMAIN.")
@pass_state
def init(state: CliState, domain_name: str, admin_email: str | None) -> None:
    """Create the data dir, database, master key, TLS certificate and first admin.

    Refused while `sealgate serve` runs on the data dir: stop it first.
    """
    from gateway.addresses import InvalidAddress, normalize_address, normalize_hosted_domain

    try:
        domain_name = normalize_hosted_domain(domain_name)
        admin_email = normalize_address(admin_email or f"admin@{domain_name}")
    except InvalidAddress as exc:
        raise click.ClickException(str(exc)) from None
    settings = state.settings
    if settings.data_dir.exists() and not settings.data_dir.is_dir():
        raise click.ClickException(f"the data dir {settings.data_dir} is a file, not a directory")
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file of that name, a read-only disk, no permission
        raise click.ClickException(
            f"cannot create the data dir {settings.data_dir}: {exc.strerror or exc}"
        ) from None
    try:
        settings.data_dir.chmod(0o700)
    except OSError as exc:
        # It exists but is not this user's: `sudo -u sealgate … init` on a directory root
        # made without the `install -d -o sealgate` of docs/deployment.md.
        raise click.ClickException(
            f"cannot make the data dir {settings.data_dir} private (chmod 700):"
            f" {exc.strerror or exc}; it must belong to the user that runs sealgate"
        ) from None
    with contextlib.ExitStack() as held:
        _initialise(state, held, domain_name, admin_email)


def _hold_the_data_dir(stack: contextlib.ExitStack, data_dir: Path, url: str) -> None:
    """The data dir's run lock, alone, for the rest of init: a new release's init
    migrated the schema under the old serve, whose code expects the old one. On
    PostgreSQL the database's too: a serve on another host shares it."""
    import sqlalchemy as sa

    from gateway import runlock

    try:
        stack.enter_context(runlock.exclusive(data_dir))
        stack.enter_context(runlock.exclusive_database(url, "sealgate init"))
    except sa.exc.OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "no reason given"
        raise click.ClickException(
            f"cannot open the database of {data_dir} ({reason}); nothing was changed"
        ) from None
    except runlock.DataDirBusy as exc:
        raise click.ClickException(
            f"{exc}: stop it first (`systemctl stop sealgate`), then run `sealgate init`"
            " again; nothing was changed"
        ) from None
    except OSError as exc:  # the lock file cannot be made: a read-only disk, not ours
        raise click.ClickException(
            f"cannot use the data dir {data_dir}: {exc.strerror or exc}; it must be"
            " writable by the user that runs sealgate"
        ) from None


def _initialise(
    state: CliState, held: contextlib.ExitStack, domain_name: str, admin_email: str
) -> None:
    import sqlalchemy as sa

    from gateway import accounts, db, filemodes
    from gateway.accounts import AccountError
    from gateway.models import Account
    from gateway.passwords import generate_password
    from gateway.tls import create_self_signed
    from keystore.masterkey import MASTER_KEYS_ENV, MasterKeyRing, ring_path, save_ring
    from sealgate.cli.backfill import backfill_keys

    settings = state.settings
    done: list[str] = []

    runtime = state.runtime
    # Before the lock file is made: a refusal here leaves the data dir as it was.
    before = state.schema_revisions()
    state.refuse_newer_schema(before)
    fresh_ring = not os.environ.get(MASTER_KEYS_ENV) and not ring_path(settings.data_dir).exists()
    if fresh_ring and before:
        _refuse_a_ring_for_lost_versions(state)
    _hold_the_data_dir(held, settings.data_dir, settings.database_url)
    db.migrate(runtime.engine)
    if not before:
        done.append("database created")
    elif before != db.schema_revisions(runtime.engine):
        done.append("database schema upgraded")

    if fresh_ring:
        save_ring(settings.data_dir, MasterKeyRing.generate())
        done.append(f"master key written to {ring_path(settings.data_dir)} (mode 0600)")

    cert, key = settings.path(settings.smtp.tls_cert), settings.path(settings.smtp.tls_key)
    try:
        if not cert.exists() or not key.exists():
            create_self_signed(cert, key, settings.smtp.hostname)
            done.append(f"self-signed TLS certificate written to {cert}")
    except OSError as exc:  # /etc/letsencrypt/live is root's alone, a read-only place
        raise click.ClickException(unreadable_tls_file(cert, exc)) from None

    changed = filemodes.tighten(settings)
    if changed:
        done.append(filemodes.describe(changed))

    made = backfill_keys(runtime)
    if made:
        done.append(f"keys made for {made} address(es) that had none")

    secrets_to_print: list[str] = []
    with db.transaction(runtime.sessions) as session:
        has_admin = session.scalar(sa.select(Account.id).where(Account.is_admin).limit(1))
        if has_admin is None:
            try:
                if accounts.find_domain(session, domain_name) is None:
                    accounts.add_domain(session, domain_name, actor=CLI_ACTOR)
                    done.append(f"hosted domain {domain_name} added")
                password = generate_password()
                admin = accounts.add_account(
                    session, runtime.hasher, admin_email, password, actor=CLI_ACTOR, is_admin=True
                )
                smtp_password = generate_password()
                accounts.add_address(
                    session, runtime.hasher, admin_email, admin, smtp_password, actor=CLI_ACTOR
                )
            except AccountError as exc:
                raise click.ClickException(str(exc)) from None
            done.append(f"admin account {admin_email} created")
            secrets_to_print = [
                f"portal login:  {admin_email} / {password}",
                f"SMTP login:    {admin_email} / {smtp_password}",
            ]

    if not done:
        click.echo(f"{settings.data_dir} is already initialised; nothing changed.")
        return
    for line in done:
        click.echo(line)
    if secrets_to_print:
        click.echo("")
        click.echo("First admin (shown once; store these now):")
        for line in secrets_to_print:
            click.echo("  " + line)
        click.echo(f"  portal:        {settings.portal.base_url.rstrip('/')}/")


def _refuse_a_ring_for_lost_versions(state: CliState) -> None:
    """No fresh ring for a database whose records are wrapped under a ring that was
    lost: none of them would ever open, and the new ring would hide that until serve
    met it (and wrap new keys under the wrong ring meanwhile)."""
    from gateway import db, master_records
    from keystore.masterkey import ring_path

    with db.read_only(state.runtime.sessions) as session:
        versions = master_records.versions_in_use(session)  # also on an older schema
    if versions:
        raise click.ClickException(
            f"{ring_path(state.settings.data_dir)} does not exist, and the database holds"
            f" records wrapped under master-key version(s) {', '.join(map(str, sorted(versions)))}"
            " that only that ring opens: a new ring would open none of them. Put the"
            " installation's master.keys back from a backup (docs/backup.md), or set"
            " $SEALGATE_MASTER_KEYS, and run init again; nothing was changed"
        )
