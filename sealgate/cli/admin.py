"""The admin commands that mirror the console: domains, accounts, addresses, aliases, policy,
rules, audit log, mail log and queue give-up. Each is a thin shell over gateway.admin;
`--json` prints what scripts parse."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from sealgate.cli.accounts import account_data, address, domain, user
from sealgate.cli.base import (
    CLI_ACTOR,
    CliState,
    cli,
    cli_client,
    emit,
    json_option,
    pass_state,
    refused,
)
from sealgate.cli.queue import queue

if TYPE_CHECKING:
    import sqlalchemy.orm as so

    from gateway.admin import Actor, policy
    from gateway.admin import domains as admin_domains

# The choices of `user set`, here so that `--help` needs no database layer
# (tests/sealgate/test_cli_admin.py checks they match gateway.admin.accounts').
LANGUAGES = ("de", "en", "fr")
ROLES = ("user", "admin")


def _actor() -> Actor:
    from gateway.admin import Actor

    return Actor(CLI_ACTOR, user_agent=cli_client())


@contextmanager
def admin_transaction(state: CliState) -> Iterator[so.Session]:
    """The command's transaction; an AdminError becomes a clean CLI error, nothing committed."""
    from gateway.admin import AdminError

    try:
        with state.transaction() as session:
            yield session
    except AdminError as exc:
        raise refused(exc) from None


# -- domains -----------------------------------------------------------------------


@domain.command("show")
@click.argument("name", required=False)
@json_option
@pass_state
def domain_show(state: CliState, name: str | None, as_json: bool) -> None:
    """Every hosted domain (or NAME) with its state and number of addresses, and what
    is wrong with its DKIM keys if one cannot be opened."""
    from gateway.admin import domains as admin_domains
    from keystore.masterkey import MasterKeyError, MasterKeyRing

    ring: MasterKeyRing | None
    try:
        ring = state.require_initialised().ring.get()
    except MasterKeyError as exc:
        ring = None
        click.echo(f"warning: DKIM keys not checked: {exc}", err=True)
    with admin_transaction(state) as session:
        rows = admin_domains.list_domains(session, ring)
        if name is not None:  # as `user show EMAIL` shows one account
            wanted = admin_domains.get(session, name).name
            rows = [r for r in rows if r.name == wanted]
        data = [
            {
                "name": r.name,
                "disabled": r.disabled,
                "addresses": r.addresses,
                "created_at": r.created_at.isoformat(),
                "dkim_problem": r.dkim_problem,
            }
            for r in rows
        ]
        text = "\n".join(
            f"{r.name}\t{'disabled' if r.disabled else 'active'}\t{r.addresses} address(es)"
            + (f"\t{r.dkim_problem}" if r.dkim_problem else "")
            for r in rows
        )
        emit(as_json, data[0] if name is not None else data, text or "no hosted domains")


@domain.command("disable")
@click.argument("name")
@json_option
@pass_state
def domain_disable(state: CliState, name: str, as_json: bool) -> None:
    """Stop accepting new mail for NAME (SMTP refuses it with 550 5.7.1)."""
    from gateway.admin import domains as admin_domains
    from gateway.timeutil import utcnow

    with admin_transaction(state) as session:
        row = admin_domains.set_disabled(session, name, True, actor=_actor(), now=utcnow())
        emit(as_json, {"domain": row.name, "disabled": True}, f"domain {row.name} disabled")


@domain.command("enable")
@click.argument("name")
@json_option
@pass_state
def domain_enable(state: CliState, name: str, as_json: bool) -> None:
    """Accept mail for NAME again."""
    from gateway.admin import domains as admin_domains
    from gateway.timeutil import utcnow

    with admin_transaction(state) as session:
        row = admin_domains.set_disabled(session, name, False, actor=_actor(), now=utcnow())
        emit(as_json, {"domain": row.name, "disabled": False}, f"domain {row.name} enabled")


@domain.command("delete")
@click.argument("name")
@click.option(
    "--purge",
    is_flag=True,
    help="Also delete every address in it, with its mail, and every account left with no"
    " address (with its 2FA, app passwords and sessions).",
)
@click.option("--yes", is_flag=True, help="Do not ask (for scripts).")
@json_option
@pass_state
def domain_delete(state: CliState, name: str, purge: bool, yes: bool, as_json: bool) -> None:
    """Delete NAME; refused while it has addresses or accounts unless --purge.

    A purge deletes the domain's addresses (mail purged, keys retired) and every
    account that then has no address left, with all it owns; an account that still
    has an address in another domain stays. The question before it, and the output
    after, give both numbers. A kept account whose login was in the domain signs in
    with one of its remaining addresses from then on; both name each such move.
    """
    from gateway.admin import domains as admin_domains
    from gateway.timeutil import utcnow

    with admin_transaction(state) as session:
        preview = admin_domains.preview_delete(session, name)
    if (refusal := preview.refusal(purge=purge)) is not None:
        raise click.ClickException(refusal)
    if purge and not preview.empty and not yes:
        for line in _moves_text(preview, "will sign in as"):
            click.echo(line)
        click.confirm(
            f"delete {preview.domain} with {len(preview.addresses)} address(es) and"
            f" {preview.messages} message(s), and {len(preview.accounts)} account(s) left"
            f" with no address ({len(preview.kept_accounts)} account(s) with addresses in"
            " other domains stay)?",
            abort=True,
        )
    with admin_transaction(state) as session:
        done = admin_domains.delete(session, name, actor=_actor(), now=utcnow(), purge=purge)
        emit(
            as_json,
            {
                "domain": done.domain,
                "addresses": list(done.addresses),
                "messages": done.messages,
                "accounts_deleted": list(done.accounts),
                "accounts_kept": list(done.kept_accounts),
                "logins_moved": [{"from": old, "to": new} for old, new in done.moved_logins],
            },
            "\n".join(
                [
                    f"domain {done.domain} deleted"
                    + (
                        f" with {len(done.addresses)} address(es); {_accounts_text(done)}"
                        if not done.empty
                        else ""
                    ),
                    *_moves_text(done, "now signs in as"),
                ]
            ),
        )


def _accounts_text(preview: admin_domains.DeletePreview) -> str:
    kept = len(preview.kept_accounts)
    return f"{len(preview.accounts)} account(s) deleted, {kept} kept (addresses in other domains)"


def _moves_text(preview: admin_domains.DeletePreview, verb: str) -> list[str]:
    """One line per kept account whose login was in the domain (tell its owner)."""
    return [
        f"{old} {verb} {new} (its login was in {preview.domain})"
        for old, new in preview.moved_logins
    ]


# -- accounts ----------------------------------------------------------------------


@user.command("show")
@click.argument("email")
@json_option
@pass_state
def user_show(state: CliState, email: str, as_json: bool) -> None:
    """Everything an admin can set on the account EMAIL."""
    from gateway.admin import accounts as admin_accounts

    with admin_transaction(state) as session:
        info = admin_accounts.info(session, email)
        data = account_data(info)
        emit(as_json, data, "\n".join(f"{k}: {v}" for k, v in data.items()))


@user.command("search")
@click.argument("query", default="")
@click.option(
    "--page", type=click.IntRange(1), default=1, show_default=True, help="Page of the listing."
)
@json_option
@pass_state
def user_search(state: CliState, query: str, page: int, as_json: bool) -> None:
    """Accounts whose login or an address contains QUERY."""
    from gateway.admin import accounts as admin_accounts

    per_page = state.settings.admin.per_page
    with admin_transaction(state) as session:
        found = admin_accounts.search(session, query, page, per_page)
        data = {
            "page": found.page,
            "pages": found.pages,
            "total": found.total,
            "accounts": [account_data(i) for i in found.items],
        }
        lines = [
            f"{i.email}\t{i.role}\t{'disabled' if i.disabled else 'active'}" for i in found.items
        ]
        lines.append(f"page {found.page} of {found.pages}, {found.total} account(s)")
        emit(as_json, data, "\n".join(lines))


@user.command("disable")
@click.argument("email")
@json_option
@pass_state
def user_disable(state: CliState, email: str, as_json: bool) -> None:
    """No portal login and no SMTP AUTH for EMAIL (its sessions end); mail still arrives."""
    from gateway.admin import accounts as admin_accounts
    from gateway.timeutil import utcnow

    with admin_transaction(state) as session:
        row = admin_accounts.set_disabled(session, email, True, actor=_actor(), now=utcnow())
        emit(as_json, {"email": row.email, "disabled": True}, f"account {row.email} disabled")


@user.command("enable")
@click.argument("email")
@json_option
@pass_state
def user_enable(state: CliState, email: str, as_json: bool) -> None:
    """Let EMAIL sign in and send again."""
    from gateway.admin import accounts as admin_accounts
    from gateway.timeutil import utcnow

    with admin_transaction(state) as session:
        row = admin_accounts.set_disabled(session, email, False, actor=_actor(), now=utcnow())
        emit(as_json, {"email": row.email, "disabled": False}, f"account {row.email} enabled")


@user.command("delete")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask (for scripts).")
@json_option
@pass_state
def user_delete(state: CliState, email: str, yes: bool, as_json: bool) -> None:
    """Delete EMAIL and its addresses: their mail is purged, their keys retired."""
    from gateway.admin import accounts as admin_accounts
    from gateway.timeutil import utcnow

    if not yes:
        with admin_transaction(state) as session:
            admin_accounts.get(session, email)  # "no account X" before asking to delete it
        click.confirm(f"delete {email} with its addresses and all their mail?", abort=True)
    with admin_transaction(state) as session:
        gone = admin_accounts.delete(session, email, actor=_actor(), now=utcnow(), confirm=email)
        emit(
            as_json,
            {"email": email.strip().lower(), "addresses": gone},
            f"account {email.strip().lower()} deleted"
            + (f" with {', '.join(gone)}" if gone else ""),
        )


@user.command("set")
@click.argument("email")
@click.option(
    "--language", type=click.Choice(LANGUAGES), help="Language of the portal and alert mails."
)
@click.option("--role", type=click.Choice(ROLES), help="An admin uses the console (with 2FA).")
@click.option(
    "--always-encrypt",
    type=click.Choice(["on", "off"]),
    help="Encrypt every message the account sends.",
)
@json_option
@pass_state
def user_set(
    state: CliState,
    email: str,
    language: str | None,
    role: str | None,
    always_encrypt: str | None,
    as_json: bool,
) -> None:
    """Change the language, role or "always encrypt" of EMAIL."""
    from gateway.admin import accounts as admin_accounts

    if language is None and role is None and always_encrypt is None:
        raise click.UsageError("give --language, --role or --always-encrypt")
    with admin_transaction(state) as session:
        if language is not None:
            admin_accounts.set_language(session, email, language, actor=_actor())
        if role is not None:
            admin_accounts.set_role(session, email, role, actor=_actor())
        if always_encrypt is not None:
            admin_accounts.set_always_encrypt(
                session, email, always_encrypt == "on", actor=_actor()
            )
        data = account_data(admin_accounts.info(session, email))
        emit(as_json, data, f"account {data['email']} updated")


# -- addresses and aliases ----------------------------------------------------------


@address.command("delete")
@click.argument("address_")
@click.option("--yes", is_flag=True, help="Do not ask (for scripts).")
@json_option
@pass_state
def address_delete(state: CliState, address_: str, yes: bool, as_json: bool) -> None:
    """Delete ADDRESS: its mail is purged, its keys retired (kept decrypt-only)."""
    from gateway.admin import accounts as admin_accounts
    from gateway.timeutil import utcnow

    if not yes:
        from gateway import accounts
        from gateway.admin import AdminError

        with admin_transaction(state) as session:
            if accounts.find_address(session, address_[:320]) is None:
                raise AdminError(f"no address {address_.strip()[:320]}")  # before asking
        click.confirm(f"delete {address_} and all its mail?", abort=True)
    with admin_transaction(state) as session:
        purged = admin_accounts.delete_address(session, address_, actor=_actor(), now=utcnow())
        name = address_.strip().lower()
        emit(
            as_json,
            {"address": name, "messages_purged": purged},
            f"address {name} deleted; {purged} message(s) purged",
        )


@cli.group()
def alias() -> None:
    """Aliases: more hosted addresses delivering to an existing address."""


@alias.command("add")
@click.argument("alias_name", metavar="ALIAS")
@click.argument("target", metavar="ADDRESS")
@json_option
@pass_state
def alias_add(state: CliState, alias_name: str, target: str, as_json: bool) -> None:
    """Deliver mail for ALIAS to the hosted ADDRESS."""
    from gateway.admin import accounts as admin_accounts

    with admin_transaction(state) as session:
        row = admin_accounts.add_alias(session, alias_name, target, actor=_actor())
        session.flush()
        emit(
            as_json,
            {"alias": row.alias, "address": row.address.address},
            f"alias {row.alias} -> {row.address.address}",
        )


@alias.command("list")
@json_option
@pass_state
def alias_list(state: CliState, as_json: bool) -> None:
    """Every alias and the address it delivers to."""
    from gateway.admin import accounts as admin_accounts

    with admin_transaction(state) as session:
        rows = admin_accounts.list_aliases(session)
        emit(
            as_json,
            [{"alias": r.alias, "address": r.address} for r in rows],
            "\n".join(f"{r.alias}\t{r.address}" for r in rows) or "no aliases",
        )


@alias.command("remove")
@click.argument("alias_name", metavar="ALIAS")
@pass_state
def alias_remove(state: CliState, alias_name: str) -> None:
    """Stop taking mail for ALIAS."""
    from gateway.admin import accounts as admin_accounts

    with admin_transaction(state) as session:
        admin_accounts.remove_alias(session, alias_name, actor=_actor())
        click.echo(f"alias {alias_name.strip().lower()} removed")


# -- encryption policy and rules ---------------------------------------------------------


@cli.group("policy")
def policy_group() -> None:
    """The encryption policy (stored in the database; the settings file gives the defaults)."""


def _policy_data(values: list[policy.PolicyValue]) -> dict[str, Any]:
    return {v.key: {"value": v.value, "default": v.default, "meaning": v.meaning} for v in values}


@policy_group.command("show")
@json_option
@pass_state
def policy_show(state: CliState, as_json: bool) -> None:
    """Every policy value, its default, and what it means."""
    from gateway.admin import policy

    with admin_transaction(state) as session:
        values = policy.show(session, state.settings)
        text = "\n".join(
            f"{v.key} = {json.dumps(v.value)}"
            + (f"  (default {json.dumps(v.default)})" if v.overridden else "")
            + f"\t# {v.meaning}"
            for v in values
        )
        emit(as_json, _policy_data(values), text)


@policy_group.command("set")
@click.argument("pairs", nargs=-1, required=True, metavar="KEY=VALUE...")
@json_option
@pass_state
def policy_set(state: CliState, pairs: tuple[str, ...], as_json: bool) -> None:
    """Set policy values, e.g. `policy set securepage_valid_days=14 subject_tag=[secure]`."""
    from gateway.admin import policy
    from gateway.timeutil import utcnow

    changes: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.UsageError(f"{pair!r}: write KEY=VALUE")
        changes[key.strip()] = value
    with admin_transaction(state) as session:
        update = policy.set_values(session, state.settings, changes, actor=_actor(), now=utcnow())
        values = policy.show(session, state.settings)
        emit(as_json, _policy_data(values), _policy_outcome(update))


def _policy_outcome(update: policy.PolicyUpdate) -> str:
    """Which keys changed the policy; a key set to the value in force is "unchanged"."""
    in_force = f"already in force: {', '.join(update.unchanged)}"
    if not update.changed:
        return f"policy unchanged ({in_force})"
    text = f"policy updated: {', '.join(update.changed)}"
    return f"{text} ({in_force})" if update.unchanged else text


@cli.group()
def rule() -> None:
    """Per recipient domain rules: mail to these domains is always encrypted."""


@rule.command("add")
@click.argument("domain_name", metavar="DOMAIN")
@json_option
@pass_state
def rule_add(state: CliState, domain_name: str, as_json: bool) -> None:
    """Require encryption for every recipient in DOMAIN."""
    from gateway.admin import policy

    with admin_transaction(state) as session:
        name = policy.add_rule(session, domain_name, actor=_actor()).domain
        emit(as_json, {"domain": name, "require_encryption": True}, f"rule added: {name}")


@rule.command("list")
@json_option
@pass_state
def rule_list(state: CliState, as_json: bool) -> None:
    """The recipient domains whose mail is always encrypted."""
    from gateway.admin import policy

    with admin_transaction(state) as session:
        rows = policy.list_rules(session)
        emit(
            as_json,
            [{"domain": r.domain, "created_at": r.created_at.isoformat()} for r in rows],
            "\n".join(r.domain for r in rows) or "no rules",
        )


@rule.command("remove")
@click.argument("domain_name", metavar="DOMAIN")
@pass_state
def rule_remove(state: CliState, domain_name: str) -> None:
    """Drop the rule for DOMAIN (its mail follows the other triggers again)."""
    from gateway.admin import policy

    with admin_transaction(state) as session:
        policy.remove_rule(session, domain_name, actor=_actor())
        click.echo(f"rule removed: {domain_name.strip().lower()}")


# -- audit log and mail log ----------------------------------------------------------------


@cli.group()
def audit() -> None:
    """The audit log: admin actions, key events, logins."""


@audit.command("list")
@click.option("--actor", default="", help="Who acted (a login, cli, relay, ...).")
@click.option("--action", default="", help="An action or its prefix (key, key.rotate, ...).")
@click.option("--address", default="", help="Events about or by this address.")
@click.option("--since", default="", help="From this day (YYYY-MM-DD, UTC).")
@click.option("--until", default="", help="Up to and including this day.")
@click.option(
    "--page", type=click.IntRange(1), default=1, show_default=True, help="Page of the listing."
)
@click.option("--csv", "as_csv", is_flag=True, help="All matching events as CSV.")
@json_option
@pass_state
def audit_list(
    state: CliState,
    actor: str,
    action: str,
    address: str,
    since: str,
    until: str,
    page: int,
    as_csv: bool,
    as_json: bool,
) -> None:
    """Events, newest first, filtered."""
    from gateway.admin import audit_log

    try:
        start, end = audit_log.parse_days(since, until, names=("--since", "--until"))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    filters = audit_log.AuditFilter(
        actor=actor, action=action, address=address, since=start, until=end
    )
    with admin_transaction(state) as session:
        if as_csv:
            click.echo(audit_log.export_csv(session, filters), nl=False)
            return
        found = audit_log.query(session, filters, page, state.settings.admin.per_page)
        data = {
            "page": found.page,
            "pages": found.pages,
            "total": found.total,
            "events": [audit_log.as_dict(e) for e in found.items],
        }
        lines = [
            f"{e.at:%Y-%m-%d %H:%M:%S}Z\t{e.actor}\t{e.action}\t{e.target}"
            f"\t{'ok' if e.success else 'FAILED'}\t{e.ip}\t{e.detail}"
            for e in found.items
        ]
        lines.append(f"page {found.page} of {found.pages}, {found.total} event(s)")
        emit(as_json, data, "\n".join(lines))


class MailLogGroup(click.Group):
    """`log --help` names how long entries are kept here, read from the settings.

    The settings are a TOML file and the environment (gateway.settings, imported
    already): no database, so help stays as cheap as any other.
    """

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_help_text(ctx, formatter)
        formatter.write_paragraph()
        with formatter.indentation():
            formatter.write_text(kept_for(ctx))


def kept_for(ctx: click.Context) -> str:
    state = ctx.find_object(CliState)
    try:
        days = state.settings.admin.mail_log_days if state is not None else None
    except click.ClickException:  # a settings file with a mistake: help still works
        days = None
    where = "[admin] mail_log_days"
    if days is None:
        return f"Entries are kept for {where} days; `sealgate serve` purges older ones."
    return f"Entries are kept for {days} days ({where}); `sealgate serve` purges older ones."


@cli.group("log", cls=MailLogGroup)
def log_group() -> None:
    """The mail log: per message and recipient, handling and delivery."""


@log_group.command("show")
@click.option("--address", default="", help="Messages from or to this address.")
@click.option("--message", default="", help="A queue id or a Message-ID.")
@click.option(
    "--page", type=click.IntRange(1), default=1, show_default=True, help="Page of the listing."
)
@json_option
@pass_state
def log_show(state: CliState, address: str, message: str, page: int, as_json: bool) -> None:
    """Entries, newest first."""
    from gateway.admin import maillog

    with admin_transaction(state) as session:
        found = maillog.search(
            session, page, state.settings.admin.per_page, address=address, message=message
        )
        data = {
            "page": found.page,
            "pages": found.pages,
            "total": found.total,
            "entries": [r.as_dict() for r in found.items],
        }
        lines = [
            f"{r.created_at:%Y-%m-%d %H:%M:%S}Z\t{r.queue_id}\t{r.sender} -> {r.recipient}"
            f"\t{r.handling}\t{r.status}\t{r.last_reply}"
            for r in found.items
        ]
        lines.append(f"page {found.page} of {found.pages}, {found.total} entr(ies)")
        emit(as_json, data, "\n".join(lines))


# -- queue -----------------------------------------------------------------------------------


@queue.command("give-up")
@click.argument("ident", metavar="ID")
@json_option
@pass_state
def queue_give_up(state: CliState, ident: str, as_json: bool) -> None:
    """Stop trying ID (a queue id or row number) and bounce it to its sender."""
    from gateway.admin import queue as admin_queue
    from gateway.timeutil import utcnow
    from keystore.masterkey import MasterKeyError

    runtime = state.require_initialised()
    try:
        ring = runtime.ring.get()  # a sealed row opens with it, for the bounce to quote
    except MasterKeyError as exc:
        raise click.ClickException(str(exc)) from None
    with admin_transaction(state) as session:
        outcome = admin_queue.give_up(
            session,
            ident,
            actor=_actor(),
            now=utcnow(),
            ring=ring,
            reporting_mta=state.settings.smtp.hostname,
        )
        emit(
            as_json,
            outcome,
            "\n".join(f"{rcpt}: given up; bounce {where}" for rcpt, where in outcome.items()),
        )
