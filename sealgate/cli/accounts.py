"""`sealgate domain|user|address …`: hosted domains, portal accounts, addresses."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from sealgate.cli.base import (
    CLI_ACTOR,
    CliState,
    cli,
    cli_client,
    emit,
    json_option,
    obtain_password,
    pass_state,
    password_option,
    refused,
)

if TYPE_CHECKING:
    from gateway.admin import accounts as admin_accounts


def account_data(info: admin_accounts.AccountInfo) -> dict[str, Any]:
    """An account as `user show`, `user add` and the other `--json` commands print it."""
    return {
        "email": info.email,
        "role": info.role,
        "language": info.language,
        "always_encrypt": info.always_encrypt,
        "disabled": info.disabled,
        "two_factor": info.two_factor,
        "addresses": list(info.addresses),
        "created_at": info.created_at.isoformat(),
    }


@cli.group()
def domain() -> None:
    """Hosted domains."""


@domain.command("add")
@click.argument("name")
@pass_state
def domain_add(state: CliState, name: str) -> None:
    """Host the mail domain NAME."""
    from gateway import accounts
    from gateway.accounts import AccountError
    from gateway.addresses import InvalidAddress

    try:
        with state.transaction() as session:
            row = accounts.add_domain(session, name, actor=CLI_ACTOR)
            click.echo(f"domain {row.name} added")
    except (AccountError, InvalidAddress) as exc:
        raise click.ClickException(str(exc)) from None


@domain.command("list")
@pass_state
def domain_list(state: CliState) -> None:
    """List the hosted domains."""
    from gateway import accounts

    with state.transaction() as session:
        for row in accounts.list_domains(session):
            click.echo(row.name)


@cli.group()
def user() -> None:
    """Portal accounts."""


@user.command("add")
@click.argument("email")
@click.option("--admin", is_flag=True, help="Give the account admin rights.")
@click.option(
    "--language",
    type=click.Choice(["de", "en", "fr"]),
    default=None,
    help="Default: the policy's language for new accounts.",
)
@click.option(
    "--external-login",
    is_flag=True,
    help="Allow a login outside the hosted domains (else it is refused).",
)
@password_option
@json_option
@pass_state
def user_add(
    state: CliState,
    email: str,
    admin: bool,
    language: str | None,
    external_login: bool,
    password_stdin: bool,
    as_json: bool,
) -> None:
    """Create the portal account EMAIL (a login in a hosted domain)."""
    from gateway.admin import Actor, AdminError
    from gateway.admin import accounts as admin_accounts

    password, generated = obtain_password(password_stdin)
    runtime = state.require_initialised()
    try:
        with state.transaction() as session:
            account = admin_accounts.create(
                session,
                runtime.settings,
                runtime.hasher,
                email,
                password,
                actor=Actor(CLI_ACTOR, user_agent=cli_client()),
                role="admin" if admin else "user",
                language=language,
                external_login=external_login,
            )
            session.flush()
            data = account_data(admin_accounts.info(session, account.email))
    except AdminError as exc:
        raise refused(exc) from None
    # The generated password is printed once, here, as in the text form; a chosen one never.
    data["password"] = password if generated else None
    text = f"account {data['email']} added"
    if generated:
        text += f"\npassword: {password}  (shown once; store it now)"
    emit(as_json, data, text)


@user.command("list")
@pass_state
def user_list(state: CliState) -> None:
    """List portal accounts: email, role and hosted addresses."""
    from gateway import accounts

    with state.transaction() as session:
        for account in accounts.list_accounts(session):
            role = "admin" if account.is_admin else "user"
            addrs = ", ".join(a.address for a in account.addresses) or "-"
            click.echo(f"{account.email}\t{role}\t{addrs}")


@cli.group()
def address() -> None:
    """Hosted addresses and their SMTP passwords."""


@address.command("add")
@click.argument("address_")
@click.option("--user", "user_email", required=True, help="The account that owns the address.")
@password_option
@pass_state
def address_add(state: CliState, address_: str, user_email: str, password_stdin: bool) -> None:
    """Create the hosted address ADDRESS for an account."""
    from gateway import accounts
    from gateway.accounts import AccountError
    from gateway.addresses import InvalidAddress
    from gateway.passwords import PasswordTooLong

    password, generated = obtain_password(password_stdin)
    hasher = state.require_initialised().hasher
    try:
        with state.transaction() as session:
            account = accounts.find_account(session, user_email)
            if account is None:
                raise AccountError(f"no account {user_email}")
            row = accounts.add_address(
                session, hasher, address_, account, password, actor=CLI_ACTOR
            )
            click.echo(f"address {row.address} added for {account.email}")
    except (AccountError, InvalidAddress, PasswordTooLong) as exc:
        raise refused(exc) from None
    if generated:
        click.echo(f"address password: {password}  (shown once; store it now)")


@address.command("list")
@pass_state
def address_list(state: CliState) -> None:
    """List hosted addresses and the account that owns each."""
    from gateway import accounts

    with state.transaction() as session:
        for row in accounts.list_addresses(session):
            click.echo(f"{row.address}\t{row.account.email}")


@address.command("passwd")
@click.argument("address_")
@password_option
@pass_state
def address_passwd(state: CliState, address_: str, password_stdin: bool) -> None:
    """Set a new SMTP password for ADDRESS."""
    from gateway import accounts
    from gateway.accounts import AccountError
    from gateway.passwords import PasswordTooLong

    password, generated = obtain_password(password_stdin)
    hasher = state.require_initialised().hasher
    try:
        with state.transaction() as session:
            row = accounts.find_address(session, address_)
            if row is None:
                raise AccountError(f"no address {address_}")
            accounts.set_address_password(session, hasher, row, password, actor=CLI_ACTOR)
            click.echo(f"password of {row.address} changed")
    except (AccountError, PasswordTooLong) as exc:
        raise click.ClickException(str(exc)) from None
    if generated:
        click.echo(f"address password: {password}  (shown once; store it now)")


@user.command("unlock")
@click.argument("email")
@pass_state
def user_unlock(state: CliState, email: str) -> None:
    """Lift the lockout after failed logins (portal, SMTP and IMAP) for the account EMAIL."""
    from gateway.admin import Actor, AdminError
    from gateway.admin import accounts as admin_accounts

    try:
        with state.transaction() as session:
            account = admin_accounts.unlock(
                session,
                state.settings.security,
                email,
                actor=Actor(CLI_ACTOR, user_agent=cli_client()),
            )
            click.echo(f"sign-in for {account.email} unlocked")
    except AdminError as exc:
        raise click.ClickException(str(exc)) from None


@user.command("passwd")
@click.argument("email")
@password_option
@pass_state
def user_passwd(state: CliState, email: str, password_stdin: bool) -> None:
    """Set a new portal password for EMAIL and end its portal sessions."""
    from gateway import accounts, sessions
    from gateway.accounts import AccountError
    from gateway.passwords import PasswordTooLong
    from gateway.timeutil import utcnow

    password, generated = obtain_password(password_stdin)
    hasher = state.require_initialised().hasher
    try:
        with state.transaction() as session:
            account = accounts.find_account(session, email)
            if account is None:
                raise AccountError(f"no account {email}")
            accounts.set_account_password(session, hasher, account, password, actor=CLI_ACTOR)
            ended = sessions.end_all(
                session, account.id, reason=sessions.END_BY_ADMIN, now=utcnow()
            )
            click.echo(f"password of {account.email} changed; {ended} portal session(s) ended")
    except (AccountError, PasswordTooLong) as exc:
        raise click.ClickException(str(exc)) from None
    if generated:
        click.echo(f"password: {password}  (shown once; store it now)")
