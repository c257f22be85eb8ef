"""`sealgate serve`: SMTP submission, the outbound relay and the portal in one process.

SIGINT and SIGTERM stop it in order: no new connections, messages already in the
pipeline commit and get their reply, the pipeline's worker processes exit, the
relay hands back its rows, then the portal finishes its requests. A message is
either committed (and answered 250) or not answered at all, so nothing is
half-written.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import signal
from typing import TYPE_CHECKING

import click

from gateway.settings import SettingsError
from keystore.masterkey import MASTER_KEYS_ENV, MasterKeyError, MasterKeyRing, load_ring, ring_path
from sealgate.cli.backfill import backfill_keys
from sealgate.cli.base import CliState, cli, pass_state, unreadable_tls_file
from sealgate.cli.stopsignal import StopSignals

if TYPE_CHECKING:
    import asyncio

    from gateway.runtime import Runtime
    from gateway.tls import CertificateReloader

log = logging.getLogger("sealgate.serve")


@cli.command()
@click.option("--debug", is_flag=True, help="Log at DEBUG level (secrets stay redacted).")
@pass_state
def serve(state: CliState, debug: bool) -> None:
    """Run the SMTP submission server, IMAP, the relay worker and the portal."""
    signals = StopSignals().catch()  # first: a stop during start-up is a clean stop too
    import asyncio

    from gateway import logs, malloc

    malloc.return_large_buffers()  # before the worker processes start: they inherit it
    level = logging.DEBUG if debug else logging.INFO
    logs.configure(level, state.settings.logging.format)
    runtime = state.require_initialised()
    _hold_the_data_dir(runtime)
    _enterable_working_dir(runtime)
    _tighten_file_modes(runtime)
    # backfill_keys: for addresses restored, or made by an older version
    for step in (_preflight, backfill_keys):
        if signals.requested:
            break
        step(runtime)
    if signals.requested:
        log.info("stopping during start-up")
        log.info("stopped")
        return
    asyncio.run(_serve(runtime, level, signals))


def _hold_the_data_dir(runtime: Runtime) -> None:
    """Tell `sealgate restore` and `init` that serve runs here, for as long as this
    process lives; on PostgreSQL also every host that shares the database, on a
    connection of its own that serve's exit (or PostgreSQL, when serve is killed) ends."""
    import sqlalchemy as sa

    from gateway import runlock

    try:
        runlock.hold_for_serve(runtime.settings.data_dir)
        hold = runlock.hold_database_for_serve(runtime.settings.database_url, "sealgate serve")
    except runlock.DataDirBusy as exc:
        raise click.ClickException(f"{exc}: start serve once it has finished") from None
    except sa.exc.OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "no reason given"
        raise click.ClickException(
            f"cannot open the database of {runtime.settings.data_dir} ({reason})"
        ) from None
    if hold is not None:
        click.get_current_context().call_on_close(hold.release)


def _enterable_working_dir(runtime: Runtime) -> None:
    """Leave a working directory this user may not enter (`sudo -u sealgate` from
    /root keeps root's): the worker processes start in the parent's and died there
    with a traceback. Every path sealgate uses is absolute or relative to the data dir."""
    if not os.access(".", os.X_OK):
        os.chdir(runtime.settings.data_dir)


def _tighten_file_modes(runtime: Runtime) -> None:
    """Close the database, lock and key files an older version left at 0644 (before
    the preflight: the master key does not load at such a mode)."""
    from gateway import filemodes

    changed = filemodes.tighten(runtime.settings)
    if changed:
        log.info("%s", filemodes.describe(changed))


def _preflight(runtime: Runtime) -> None:
    """Refuse to start on anything that would fail later, naming the problem."""
    from gateway import db

    settings = runtime.settings
    try:
        ring = load_ring(settings.data_dir)
    except MasterKeyError as exc:
        raise click.ClickException(str(exc)) from None
    for name in (settings.smtp.tls_cert, settings.smtp.tls_key):
        try:
            found = settings.path(name).is_file()
        except OSError as exc:  # a directory on the way this user may not enter
            raise click.ClickException(unreadable_tls_file(settings.path(name), exc)) from None
        if settings.path(name).exists() and not found:
            # A directory at the path (a `mkdir -p` one level too deep) is no missing file.
            raise click.ClickException(f"TLS file {settings.path(name)} is not a file")
        if not found:
            # Met after a restore onto a new machine: backups hold no certificate.
            raise click.ClickException(
                f"TLS file {settings.path(name)} is missing: put the certificate and key"
                " there ([smtp] tls_cert, tls_key), or run `sealgate init`, which makes a"
                " self-signed pair"
            )
    from gateway.relay import client_tls_context

    try:
        client_tls_context(settings.relay)  # else the relay task fails after "ready"
    except SettingsError as exc:
        raise click.ClickException(f"configuration error: {exc}") from None
    from gateway.tls import TlsFilesError, check_pair

    try:
        check_pair(settings.path(settings.smtp.tls_cert), settings.path(settings.smtp.tls_key))
    except TlsFilesError as exc:
        raise click.ClickException(f"TLS certificate not usable: {exc}") from None
    current, heads = db.schema_revisions(runtime.engine), db.head_revisions()
    if current != heads:
        raise click.ClickException(
            f"the database schema is at {', '.join(sorted(current)) or 'nothing'}, this version"
            f" needs {', '.join(sorted(heads))}: run `sealgate init` to migrate"
        )
    _check_ring_opens_the_keys(runtime, ring)


def _check_ring_opens_the_keys(runtime: Runtime, ring: MasterKeyRing) -> None:
    """Refuse a ring that is not this installation's (gateway.master_records.check_ring:
    the address keys, DKIM keys, two-factor secrets and sealed queue rows): serve would
    answer every encrypted message with 451 and seal new records under a ring that the
    real one can never open."""
    from gateway import db, master_records
    from keystore import ringcheck

    source = f"{ring_path(runtime.settings.data_dir)} or ${MASTER_KEYS_ENV}"
    with db.read_only(runtime.sessions) as session:
        try:
            master_records.check_ring(session, ring, source=source)
        except (ringcheck.WrongRingError, ringcheck.ForeignVersionsError) as exc:
            raise click.ClickException(str(exc)) from None


# cheroot (the portal, the metrics listener) gives no errno, only a message holding it:
# "No socket could be created -- (('127.0.0.1', 8080): [Errno 98] Address already in use)".
_CHEROOT_BIND = re.compile(r"\((\(.*?\)): \[Errno (\d+)\] ([^)]*)\)")


def _listen_failure(exc: OSError) -> str:
    """Why a listener could not start, with the same hint for a port in use whichever
    listener it was (aiosmtpd's errors carry the errno, cheroot's only name it)."""
    number, reason = exc.errno, exc.strerror or str(exc)
    found = _CHEROOT_BIND.search(str(exc)) if number is None else None
    if found:
        number, reason = int(found[2]), f"{found[1]}: {found[3]}"
    if number == errno.EADDRINUSE:
        reason += " (another program, perhaps another `sealgate serve`, listens there)"
    elif number == errno.EACCES:
        reason += (
            " (a port below 1024 needs CAP_NET_BIND_SERVICE, which the unit in"
            " contrib/systemd gives; see docs/deployment.md)"
        )
    return reason


def _reload_tls(reloader: CertificateReloader) -> None:
    """SIGHUP: new handshakes get the renewed certificate; open connections keep theirs."""
    try:
        reloader.reload()
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        log.error("TLS certificate not reloaded, the old one stays in use: %s", exc)
        return
    log.info("TLS certificate reloaded from %s", reloader.cert_path)


async def _serve(runtime: Runtime, log_level: int, signals: StopSignals) -> None:
    import asyncio

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals.hand_to(loop, stop)
    try:
        await _serve_until_stopped(runtime, log_level, stop)
    finally:
        signals.take_back(loop)


async def _serve_until_stopped(runtime: Runtime, log_level: int, stop: asyncio.Event) -> None:
    # The whole stack, imported here and not at the top: see sealgate/cli/__init__.py.
    import asyncio
    import random

    from gateway import activity, wkd_refresh
    from gateway.admin import keys as admin_keys
    from gateway.admin import maillog
    from gateway.imap.notify import Notifier
    from gateway.imap.server import ImapServer
    from gateway.inbound import InboundServer
    from gateway.metrics import MetricsServer
    from gateway.postfix.filter import FilterServer
    from gateway.relay import Relay
    from gateway.securepage import purge as securepage_purge
    from gateway.smtp_server import SubmissionServer
    from gateway.tls import CertificateReloader
    from gateway.workers import WorkerPool
    from webportal import create_app
    from webportal.server import PortalServer
    from webportal.session_key import SessionKeyError

    loop = asyncio.get_running_loop()

    workers = runtime.settings.workers
    pool = (
        WorkerPool(
            runtime.settings.data_dir,
            workers.processes,
            max_group=workers.max_group,
            backlog=workers.backlog,
            log_level=log_level,
            log_format=runtime.settings.logging.format,
            sessions=runtime.sessions,
        )
        if workers.processes
        else None
    )
    if pool is not None:
        failed: RuntimeError | None = None
        try:
            await pool.start()
        except RuntimeError as exc:
            failed = exc
        if failed is not None or stop.is_set():
            await pool.close()
            # A stop sent to the whole group can end a worker that was starting.
            if not stop.is_set():
                raise click.ClickException(str(failed)) from None
            log.info("stopping during start-up")
            runtime.close()
            log.info("stopped")
            return
    try:
        smtp = SubmissionServer(runtime, pool=pool)
        inbound = InboundServer(runtime) if runtime.settings.smtp.inbound else None
        content_filter = FilterServer(runtime) if runtime.settings.filter.enabled else None
        portal = PortalServer(create_app(runtime), runtime.settings)
        metrics = MetricsServer(runtime) if runtime.settings.metrics.enabled else None
        notifier = Notifier()
        imap = ImapServer(runtime, notifier) if runtime.settings.imap.enabled else None
    except BaseException as exc:
        # The worker processes are running: without this they would keep the process
        # alive after the error, and serve would hang instead of exiting.
        if pool is not None:
            await pool.close()
        if isinstance(exc, SettingsError):
            raise click.ClickException(f"configuration error: {exc}") from None
        if isinstance(exc, SessionKeyError):
            raise click.ClickException(str(exc)) from None
        raise
    settings = runtime.settings
    where = f"[smtp] listen = {settings.smtp.listen!r}"
    try:
        await smtp.start()
        if inbound is not None:
            await inbound.start()
        if content_filter is not None:
            where = f"[filter] listen = {settings.filter.listen!r}"
            await content_filter.start()
        if imap is not None:
            where = f"[smtp] listen = {settings.smtp.listen!r}"
            await imap.start()
        where = f"[portal] host = {settings.portal.host!r}"
        portal.start()
        if metrics is not None:
            where = f"[metrics] host = {settings.metrics.host!r}"
            metrics.start()
    except OSError as exc:
        await smtp.stop(grace=0)
        if inbound is not None:
            await inbound.stop(grace=0)
        portal.stop()
        if content_filter is not None:
            await content_filter.stop(grace=0)
        if imap is not None:
            await imap.stop()
        if pool is not None:
            await pool.close()
        raise click.ClickException(f"cannot listen ({where}): {_listen_failure(exc)}") from None
    reloader = CertificateReloader(
        settings.path(settings.smtp.tls_cert), settings.path(settings.smtp.tls_key)
    )
    for server in (smtp, inbound, portal, imap):
        if server is not None and server.ssl_context is not None:
            reloader.watch(server.ssl_context)
    loop.add_signal_handler(signal.SIGHUP, _reload_tls, reloader)
    relay_worker = Relay(runtime, rng=random.Random())  # noqa: S311  (back-off jitter)
    relay_worker.announce()  # once, here: not from the task, which may first run at a stop
    relay = asyncio.create_task(relay_worker.run(stop), name="relay")
    purge = asyncio.create_task(activity.run_purge(runtime, stop), name="activity-purge")
    pages = asyncio.create_task(securepage_purge.run_purge(runtime, stop), name="securepage-purge")
    wkd = asyncio.create_task(wkd_refresh.run_refresh(runtime, stop), name="wkd-refresh")
    mail_log = asyncio.create_task(maillog.run_purge(runtime, stop), name="mail-log-purge")
    rotations = asyncio.create_task(admin_keys.run_rotations(runtime, stop), name="master-rotation")

    notices = asyncio.create_task(notifier.listen(runtime.engine, stop), name="imap-notices")

    host = runtime.settings.smtp.listen
    mx = f" smtp-inbound={host}:{inbound.port}" if inbound is not None else ""
    if imap is not None:
        mx += f" imap-starttls={host}:{imap.port} imap-tls={host}:{imap.tls_port}"
    mx += f" metrics={metrics.url}" if metrics is not None else ""
    if content_filter is not None:
        mx += f" content-filter={runtime.settings.filter.listen}:{content_filter.port}"
    if not stop.is_set():  # stopped while starting: straight on to the stop, never "ready"
        click.echo(
            f"sealgate ready: smtp-starttls={host}:{smtp.submission_port} "
            f"smtp-tls={host}:{smtp.tls_port} portal={portal.url}{mx}",
        )
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait({waiter, relay}, return_when=asyncio.FIRST_COMPLETED)

    log.info("stopping")
    stop.set()
    await smtp.stop()
    if pool is not None:
        await pool.close()  # messages handed out are answered by now; workers exit
    if inbound is not None:
        await inbound.stop()
    if content_filter is not None:
        await content_filter.stop()
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
    await wkd
    await mail_log
    await rotations
    await notices
    await asyncio.to_thread(portal.stop)
    if metrics is not None:
        await asyncio.to_thread(metrics.stop)
    runtime.close()
    if failure is not None:
        log.error("the relay worker failed", exc_info=failure)
        raise click.ClickException(f"the relay worker stopped: {failure}")
    log.info("stopped")
