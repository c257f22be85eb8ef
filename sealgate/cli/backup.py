"""`sealgate backup DIR` and `sealgate restore DIR`.

The work is in gateway.backup, imported inside the commands so that `sealgate
--help` does not load SQLAlchemy and the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from sealgate.cli.base import CLI_ACTOR, CliState, cli, pass_state


class _Bars:
    """One click progress bar per step ("database", "checksums"), fed absolute counts."""

    def __init__(self) -> None:
        self._bars: dict[str, Any] = {}
        self._done: dict[str, int] = {}

    def __call__(self, step: str, done: int, total: int) -> None:
        if step not in self._bars:
            bar = click.progressbar(length=max(total, 1), label=f"{step:<10}", show_pos=True)
            bar.__enter__()
            self._bars[step], self._done[step] = bar, 0
        bar = self._bars[step]
        bar.update(max(done - self._done[step], 0))
        self._done[step] = max(done, self._done[step])

    def close(self) -> None:
        for bar in self._bars.values():
            bar.__exit__(None, None, None)
        self._bars.clear()


def _audit(state: CliState, action: str, directory: Path, detail: str) -> None:
    from gateway import audit

    with state.transaction() as session:
        audit.record(
            session,
            action,
            actor=CLI_ACTOR,
            target=str(directory.resolve())[:300],
            detail=detail if action != "backup.make" else f"{detail} master.keys",
        )


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--without-master-keys",
    is_flag=True,
    help="Leave master.keys out (keep the ring somewhere else; restore then needs it).",
)
@pass_state
def backup(state: CliState, directory: Path, without_master_keys: bool) -> None:
    """Back up the database, master.keys and sealgate.toml into DIRECTORY (new or empty).

    Safe while sealgate runs: SQLite is copied with its online backup API,
    PostgreSQL with pg_dump. DIRECTORY gets a manifest of SHA-256 checksums.
    """
    from gateway.backup import run
    from gateway.backup.manifest import BackupError

    # A database a newer release migrated is copied as it is: its manifest names the
    # revision, and only that release (or a newer one) restores it.
    state.newer_schema_ok = True
    state.require_initialised()
    bars = _Bars()
    try:
        manifest = run.make_backup(
            state.settings, directory, include_ring=not without_master_keys, progress=bars
        )
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        bars.close()
    counts = ", ".join(f"{n} {what}" for what, n in manifest.counts.items())
    # A backup holds every mailbox (and, by default, the keys that open them): who
    # took one, and where to, belongs in the log. Recorded after the copy, so the
    # backup itself does not hold it.
    _audit(state, "backup.make", directory, "without" if without_master_keys else "with")
    click.echo(f"backup written to {directory}: {counts}")
    versions = ", ".join(map(str, manifest.master_key_versions)) or "none"
    click.echo(f"the data is wrapped under master-key version(s) {versions}")
    if without_master_keys:
        click.echo("master.keys is NOT in the backup: keep a copy of it; without it nothing opens")
    else:
        click.echo(
            "master.keys is in the backup: whoever has the directory can open the secret"
            " keys; store it encrypted"
        )


@cli.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace a database that already holds data.")
@pass_state
def restore(state: CliState, directory: Path, force: bool) -> None:
    """Restore a backup made by `sealgate backup` into the data dir and database.

    Stop sealgate first. Checks the checksums and that the master key ring can open
    the data before it changes anything; the current ring's versions are kept and
    the backup's are added (decrypt-only), so nothing that opened before stops.
    """
    from gateway.backup import run
    from gateway.backup.manifest import BackupError

    bars = _Bars()
    try:
        result = run.restore(state.settings, directory, force=force, progress=bars)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        bars.close()
    counts = ", ".join(f"{n} {what}" for what, n in result.manifest.counts.items())
    # Into the restored database: the log that was there before is the backup's now.
    _audit(state, "backup.restore", directory, f"made {result.manifest.created_at}")
    click.echo(f"restored the backup of {result.manifest.created_at}: {counts}")
    versions = ", ".join(map(str, result.ring_versions))
    written = "written to master.keys" if result.ring_written else "unchanged"
    click.echo(f"master key ring: version(s) {versions} ({written})")
    if result.settings_note:
        click.echo(result.settings_note)
