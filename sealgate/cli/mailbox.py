"""`sealgate mailbox export ADDRESS [--folder F]`: a hosted mailbox as mbox on stdout."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import click

from sealgate.cli.base import CLI_ACTOR, CliState, cli, pass_state

# Folders every mailbox has, with or without a row of their own.
STANDARD_FOLDERS = ("INBOX", "Sent", "Drafts", "Trash")


@cli.group()
def mailbox() -> None:
    """Hosted mailboxes."""


@mailbox.command("export")
@click.argument("address_", metavar="ADDRESS")
@click.option("--folder", default=None, help="Only this folder (default: every folder).")
@pass_state
def mailbox_export(state: CliState, address_: str, folder: str | None) -> None:
    """Write ADDRESS's messages to standard output as an mboxrd file, oldest first.

    Encrypted messages are exported as stored (PGP/MIME): this never decrypts.
    """
    import sqlalchemy as sa

    from gateway import accounts, audit
    from gateway.mbox import MboxEntry, write_mbox
    from gateway.models import MailboxMessage, MailFolder

    out = sys.stdout.buffer
    with state.transaction() as session:
        address = accounts.find_address(session, address_)
        if address is None:
            raise click.ClickException(f"no hosted address {address_}")
        where = [MailboxMessage.address_id == address.id]
        if folder is not None:
            where.append(MailboxMessage.folder == folder)
        total = session.scalar(sa.select(sa.func.count(MailboxMessage.id)).where(*where)) or 0
        if folder is not None and not total and folder not in STANDARD_FOLDERS:
            known = session.scalar(
                sa.select(MailFolder.id).where(
                    MailFolder.account_id == address.account_id, MailFolder.name == folder
                )
            )
            if known is None:
                # An export of "Inbx" wrote an empty file and said "0 messages" as if
                # the mailbox were empty.
                raise click.ClickException(f"{address.address} has no folder {folder[:200]!r}")
        messages = session.scalars(
            sa.select(MailboxMessage)
            .where(*where)
            .order_by(MailboxMessage.received_at, MailboxMessage.id)
            .execution_options(yield_per=100)
        )

        def entries() -> Iterator[MboxEntry]:
            with click.progressbar(length=total, label="exporting", file=sys.stderr) as bar:
                for msg in messages:
                    yield MboxEntry(msg.envelope_from, msg.received_at, msg.raw)
                    bar.update(1)
                    session.expunge(msg)

        written = write_mbox(entries(), out)
        # Taking a user's mail out of the gateway is an admin action like any other.
        audit.record(
            session,
            "mailbox.export",
            actor=CLI_ACTOR,
            target=address.address,
            account_id=address.account_id,
            detail=f"{written} message(s)" + (f", folder {folder[:200]}" if folder else ""),
        )
    out.flush()
    where_text = f" (folder {folder})" if folder is not None else ""
    click.echo(f"{written} message(s) exported from {address.address}{where_text}", err=True)
