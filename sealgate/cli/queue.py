"""`sealgate queue list|retry|delete`: see and steer the outbound queue."""

from __future__ import annotations

import click

from sealgate.cli.base import CLI_ACTOR, CliState, cli, pass_state


@cli.group()
def queue() -> None:
    """Outbound mail waiting for the relay."""


@queue.command("list")
@pass_state
def queue_list(state: CliState) -> None:
    """Every queued row: queue id, row id, state, attempts, next try, envelope, last error.

    A sealed row the master key ring cannot open is named, with its master-key
    version and when it bounces, so the admin can still put the ring back.
    """
    import datetime as dt

    from gateway import queue as outbound
    from gateway.timeutil import describe_seconds, utcnow
    from keystore.masterkey import MasterKeyError

    now = utcnow()
    runtime = state.require_initialised()
    try:
        ring = runtime.ring.get()
    except MasterKeyError as exc:
        ring = None
        click.echo(f"the master key ring cannot be loaded: {exc}", err=True)
    max_age = dt.timedelta(seconds=state.settings.relay.max_age)
    with state.transaction() as session:
        rows = outbound.list_items(session)
        if not rows:
            click.echo("queue is empty")
            return
        if not state.settings.relay.host:
            click.echo(
                "no smarthost is configured ([relay] host is empty): mail to other domains"
                " cannot leave; it waits here and bounces to its sender"
                f" {describe_seconds(state.settings.relay.max_age)} after it was queued",
                err=True,
            )
        for row in rows:
            status = "sending" if outbound.in_flight(row, now) else "queued"
            click.echo(
                f"{row.queue_id}\t#{row.id}\t{status}\tattempts {row.attempts}\t"
                f"next {row.next_attempt_at:%Y-%m-%d %H:%M:%S} UTC\t"
                f"{row.mail_from or '<>'} -> {row.rcpt_to}\t{len(row.raw)} bytes"
            )
            unopenable = outbound.why_unopenable(ring, row) if ring is not None else ""
            if unopenable:
                click.echo(
                    f"\tcannot be opened: {unopenable}; unless master.keys holds that"
                    " version again, it bounces without its content at"
                    f" {row.created_at + max_age:%Y-%m-%d %H:%M:%S} UTC"
                )
            elif row.last_error:
                click.echo(f"\tlast error: {row.last_error}")
        click.echo(f"{len(rows)} row(s) queued")


@queue.command("retry")
@click.argument("ident", metavar="ID")
@pass_state
def queue_retry(state: CliState, ident: str) -> None:
    """Try ID again now (a queue id, or a row number from `queue list`)."""
    from gateway import queue as outbound
    from gateway.queue import QueueError
    from gateway.timeutil import utcnow

    try:
        with state.transaction() as session:
            rows = outbound.retry_now(session, ident, now=utcnow(), actor=CLI_ACTOR)
            for row in rows:
                click.echo(f"{row.queue_id} to {row.rcpt_to}: due now")
    except QueueError as exc:
        raise click.ClickException(str(exc)) from None


@queue.command("delete")
@click.argument("ident", metavar="ID")
@pass_state
def queue_delete(state: CliState, ident: str) -> None:
    """Remove ID from the queue without a bounce (a queue id, or a row number)."""
    from gateway import queue as outbound
    from gateway.queue import QueueError
    from gateway.timeutil import utcnow

    try:
        with state.transaction() as session:
            rows = outbound.delete(session, ident, now=utcnow(), actor=CLI_ACTOR)
            for row in rows:
                click.echo(f"{row.queue_id} to {row.rcpt_to}: deleted")
    except QueueError as exc:
        raise click.ClickException(str(exc)) from None
