"""`sealgate serve`: SMTP submission, the outbound relay and the portal in one process.

SIGINT and SIGTERM stop it in order: no new connections, messages already in the
pipeline commit and get their reply, the relay hands back its rows, then the
portal finishes its requests. A message is either committed (and answered 250)
or not answered at all, so nothing is half-written.
"""

from __future__ import annotations

import asyncio
import logging
import signal

import click

from gateway import activity, db, logs
from gateway.imap.notify import Notifier
from gateway.imap.server import ImapServer
from gateway.inbound import InboundServer
from gateway.relay import run_relay
from gateway.runtime import Runtime
from gateway.securepage import purge as securepage_purge
from gateway.smtp_server import SubmissionServer
from keystore.masterkey import MasterKeyError, load_ring
from sealgate.cli.base import CliState, cli, pass_state
from webportal import create_app
from webportal.server import PortalServer

log = logging.getLogger("sealgate.serve")


@cli.command()
@click.option("--debug", is_flag=True, help="Log at DEBUG level (secrets stay redacted).")
@pass_state
def serve(state: CliState, debug: bool) -> None:
    """Run the SMTP submission server, IMAP, the relay worker and the portal."""
    logs.configure(logging.DEBUG if debug else logging.INFO)
    runtime = state.require_initialised()
    _preflight(runtime)
    asyncio.run(_serve(runtime))


def _preflight(runtime: Runtime) -> None:
    """Refuse to start on anything that would fail later, naming the problem."""
    settings = runtime.settings
    try:
        load_ring(settings.data_dir)
    except MasterKeyError as exc:
        raise click.ClickException(str(exc)) from None
    for name in (settings.smtp.tls_cert, settings.smtp.tls_key):
        if not settings.path(name).is_file():
            raise click.ClickException(f"TLS file {settings.path(name)} is missing")
    current, heads = db.schema_revisions(runtime.engine), db.head_revisions()
    if current != heads:
        raise click.ClickException(
            f"the database schema is at {', '.join(sorted(current)) or 'nothing'}, this version"
            f" needs {', '.join(sorted(heads))}: run `sealgate init` to migrate"
        )


async def _serve(runtime: Runtime) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    smtp = SubmissionServer(runtime)
    inbound = InboundServer(runtime) if runtime.settings.smtp.inbound else None
    portal = PortalServer(create_app(runtime), runtime.settings)
    notifier = Notifier()
    imap = ImapServer(runtime, notifier) if runtime.settings.imap.enabled else None
    try:
        await smtp.start()
        if inbound is not None:
            await inbound.start()
        if imap is not None:
            await imap.start()
        portal.start()
    except OSError as exc:
        await smtp.stop(grace=0)
        if inbound is not None:
            await inbound.stop(grace=0)
        if imap is not None:
            await imap.stop()
        raise click.ClickException(f"cannot listen: {exc.strerror or exc}") from None
    relay = asyncio.create_task(run_relay(runtime, stop), name="relay")
    purge = asyncio.create_task(activity.run_purge(runtime, stop), name="activity-purge")
    pages = asyncio.create_task(securepage_purge.run_purge(runtime, stop), name="securepage-purge")
    notices = asyncio.create_task(notifier.listen(runtime.engine, stop), name="imap-notices")

    host = runtime.settings.smtp.listen
    mx = f" smtp-inbound={host}:{inbound.port}" if inbound is not None else ""
    if imap is not None:
        mx += f" imap-starttls={host}:{imap.port} imap-tls={host}:{imap.tls_port}"
    click.echo(
        f"sealgate ready: smtp-starttls={host}:{smtp.submission_port} "
        f"smtp-tls={host}:{smtp.tls_port} portal={portal.url}{mx}",
    )
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait({waiter, relay}, return_when=asyncio.FIRST_COMPLETED)

    log.info("stopping")
    stop.set()
    await smtp.stop()
    if inbound is not None:
        await inbound.stop()
    if imap is not None:
        await imap.stop()
    failure: BaseException | None = None
    try:
        await relay
    except asyncio.CancelledError:
        pass
    except Exception as exc:  # noqa: BLE001  (reported below, after a clean stop)
        failure = exc
    await purge
    await pages
    await notices
    await asyncio.to_thread(portal.stop)
    runtime.close()
    if failure is not None:
        log.error("the relay worker failed", exc_info=failure)
        raise click.ClickException(f"the relay worker stopped: {failure}")
    log.info("stopped")
