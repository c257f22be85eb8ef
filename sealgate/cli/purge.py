"""`sealgate purge`: delete secure-page ciphertext nobody can open any more.

`sealgate serve` runs the same purge every `[securepage] purge_interval`; this
command is for a server that is not running, or to purge at once.
"""

from __future__ import annotations

import click

from sealgate.cli.base import CLI_ACTOR, CliState, cli, pass_state

# Prefix-matched by `sealgate audit list --action securepage.purge`, with the batches.
ACTION_RUN = "securepage.purge.run"


@cli.command()
@click.option("--dry-run", is_flag=True, help="Only say how many messages would be purged.")
@pass_state
def purge(state: CliState, dry_run: bool) -> None:
    """Delete the ciphertext of secure-page messages whose links all expired or were revoked.

    Rows purged longer ago than `[securepage] history_days` are forgotten too.
    """
    from gateway import audit
    from gateway.securepage import purge as securepage_purge
    from gateway.timeutil import utcnow

    runtime = state.require_initialised()
    now = utcnow()
    due = securepage_purge.pending(runtime, now)
    if dry_run:
        click.echo(f"{due} secure-page message(s) would be purged")
        forgettable = securepage_purge.pending_history(runtime, now)
        click.echo(f"{forgettable} purged secure-page message(s) would be forgotten")
        return
    # Both steps count on one bar: the ciphertexts due, then the rows to forget.
    total = due + securepage_purge.pending_history(runtime, now)
    with click.progressbar(length=total, label="purging secure pages", show_pos=True) as bar:
        result = securepage_purge.purge(runtime, now, actor=CLI_ACTOR, progress=bar.update)
    # The batches' events say what each deleted; this one that an admin ran the purge,
    # and what it removed in all, also when that was nothing.
    with state.transaction() as session:
        audit.record(
            session,
            ACTION_RUN,
            actor=CLI_ACTOR,
            detail=(
                f"{result.ciphertexts} ciphertexts deleted,"
                f" {result.forgotten} purged messages forgotten"
            ),
        )
    click.echo(
        f"purged {result.ciphertexts} secure-page message(s);"
        f" forgot {result.forgotten} purged more than"
        f" {runtime.settings.securepage.history_days} days ago"
    )
