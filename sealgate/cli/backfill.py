"""The key backfill as `init` and `serve` run it: with a progress bar when there is work."""

from __future__ import annotations

from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from gateway.runtime import Runtime

# Below this many addresses the backfill is quick and a bar would only flicker.
PROGRESS_FROM = 20


def backfill_keys(runtime: Runtime) -> int:
    """Give every address without a key its key; returns how many were made."""
    from gateway import address_keys
    from gateway.timeutil import utcnow
    from keystore.masterkey import MasterKeyError
    from keystore.wrap import DecryptionError

    with ExitStack() as stack:
        bars: list[Any] = []

        def on_start(total: int) -> None:
            click.echo(f"making keys for {total} address(es) that have none")
            if total >= PROGRESS_FROM:
                bar = click.progressbar(length=total, label="making keys", show_pos=True)
                bars.append(stack.enter_context(bar))

        def on_batch(done: int) -> None:
            if bars:
                bars[0].update(done)

        try:
            return address_keys.backfill(
                runtime.sessions, runtime.ring.get(), utcnow, on_start=on_start, on_batch=on_batch
            )
        except (MasterKeyError, DecryptionError) as exc:
            raise click.ClickException(f"cannot make the missing address keys: {exc}") from None
