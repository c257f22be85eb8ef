"""`sealgate dns DOMAIN` and `sealgate dns check DOMAIN`: the records to publish, and a check.

Heavy modules (SQLAlchemy models, dnspython) are imported inside the commands, so
`sealgate --help` does not pay for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from sealgate.cli.base import CliState, cli, pass_state

if TYPE_CHECKING:
    from gateway.dnsrecords.records import Record


class _DefaultShow(click.Group):
    """`sealgate dns DOMAIN` runs `show`; `sealgate dns check DOMAIN` runs `check`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["show", *args]
        return super().parse_args(ctx, args)


@cli.group(cls=_DefaultShow)
def dns() -> None:
    """DNS records of a hosted domain: `sealgate dns DOMAIN` prints them,
    `sealgate dns check DOMAIN` compares them with what DNS answers."""


def _records(state: CliState, name: str) -> list[Record]:
    """The domain's records; its DKIM keys are made first if it has none yet."""
    from gateway import accounts, db
    from gateway.dkim import keys as dkim_keys
    from gateway.dnsrecords import records
    from gateway.timeutil import utcnow
    from keystore.masterkey import MasterKeyError

    runtime = state.require_initialised()
    with db.transaction(runtime.sessions) as session:
        domain = accounts.find_domain(session, name.strip().rstrip(".").lower())
        if domain is None:
            raise click.ClickException(
                f"{name.strip()[:253] or repr(name)} is not a hosted domain"
                " (see `sealgate domain list`)"
            )
        try:
            dkim_keys.ensure_keys(session, runtime.ring.get(), domain, utcnow())
        except MasterKeyError as exc:
            message = f"cannot make the DKIM keys of {domain.name}: {exc}"
            raise click.ClickException(message) from None
        if problem := dkim_keys.problem(session, runtime.ring.get(), domain):
            click.echo(f"warning: {problem}", err=True)
        return records.domain_records(
            state.settings, domain.name, dkim_keys.current_keys(session, domain.id)
        )


@dns.command("show")
@click.argument("domain")
@pass_state
def show(state: CliState, domain: str) -> None:
    """Print the records DOMAIN needs, as zone-file lines."""
    from gateway.dnsrecords import records

    found = _records(state, domain)
    click.echo(f"; DNS records for {domain} (sealgate); publish them in the zone of {domain}")
    click.echo(records.zone_text(found, state.settings.dns.ttl), nl=False)


@dns.command("check")
@click.argument("domain")
@click.option(
    "--nameserver",
    metavar="IP[:PORT]",
    help="Ask this server instead of the system resolver (e.g. the domain's primary).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 60),
    default=5.0,
    show_default=True,
    help="Seconds to wait for each DNS answer.",
)
@pass_state
def check(state: CliState, domain: str, nameserver: str | None, timeout: float) -> None:
    """Compare what DNS answers for DOMAIN with the records it needs.

    Exits 1 when a record is missing or different, 2 when DNS could not be asked.
    """
    from gateway.dnsrecords import check as dns_check

    found = _records(state, domain)
    try:
        resolver = dns_check.resolver_for(nameserver, timeout=timeout)
    except ValueError:
        raise click.ClickException(f"--nameserver {nameserver!r}: expected IP or IP:PORT") from None
    findings = []
    for finding in dns_check.check(resolver, found):
        findings.append(finding)
        record = finding.record
        line = f"{finding.status.upper():<9} {record.name} {record.rtype}"
        if finding.status == "ok":
            click.echo(line)
            continue
        click.echo(f"{line}\n          want: {record.value}")
        for value in finding.found:
            click.echo(f"          have: {value}")
        if finding.detail:
            click.echo(f"          ({finding.detail})")
    bad = [f for f in findings if f.status != "ok"]
    click.echo(f"{len(findings) - len(bad)} of {len(findings)} records as expected")
    ctx: Any = click.get_current_context()
    if any(f.status == "error" for f in bad):
        ctx.exit(2)
    if bad:
        ctx.exit(1)
