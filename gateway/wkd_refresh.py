"""Re-check keys found by Web Key Directory once their cache time has passed.

A WKD key is used for `[keys] wkd_cache_ttl` seconds after its directory last
served it. Messages re-ask the directory when they need a stale key, but a key
nobody writes to would stay stale (and a revocation unseen) until then; the
refresh asks again for every such key, so a revoked key is dropped (kept as a
tombstone, never used again), a key the directory no longer has is forgotten,
and a still-served key gets a new confirmation time. `sealgate keys refresh`
runs it once; `sealgate serve` every `[keys] wkd_refresh_interval` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from dataclasses import dataclass

import sqlalchemy as sa

from gateway import db, outages
from gateway.pipeline.external_keys import discover_all
from gateway.runtime import Runtime
from gateway.timeutil import Clock, utcnow
from keystore import directory
from keystore.models import SOURCE_WKD, ExternalKey

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RefreshResult:
    checked: int
    confirmed: int  # still served a usable key (changed ones included)
    dropped: tuple[str, ...]  # addresses whose WKD key is no longer used
    changed: int = 0  # of the confirmed: another key, or new bytes (an expiry moved)

    def summary(self) -> str:
        """The counts, for the log and the audit entry of a refresh run by hand."""
        return (
            f"{self.checked} checked, {self.confirmed} confirmed, {self.changed} changed,"
            f" {len(self.dropped)} dropped"
        )


def stale_addresses(runtime: Runtime, now: dt.datetime) -> list[str]:
    """Addresses whose WKD key was last confirmed longer than the cache time ago."""
    cutoff = now - dt.timedelta(seconds=runtime.settings.keys.wkd_cache_ttl)
    with db.read_only(runtime.sessions) as session:
        return list(
            session.scalars(
                sa.select(ExternalKey.address)
                .where(
                    ExternalKey.source == SOURCE_WKD,
                    ExternalKey.revoked_at.is_(None),
                    ExternalKey.last_checked < cutoff,
                )
                .order_by(ExternalKey.address)
            )
        )


def refresh(runtime: Runtime, now: dt.datetime) -> RefreshResult:
    """Ask the directories again for every stale WKD key and store what they answer."""
    addresses = stale_addresses(runtime, now)
    if not addresses:
        return RefreshResult(0, 0, ())
    found = discover_all(runtime, addresses, now)
    usable = {d.address for d in found}
    changed = sum(1 for d in found if d.outcome not in (None, "unchanged"))
    # A directory that is merely unreachable drops nothing: the key stays, stale,
    # until an answer says otherwise.
    with db.read_only(runtime.sessions) as session:
        dropped = tuple(
            a for a in addresses if directory.usable(session, a, SOURCE_WKD, now) is None
        )
    for address in dropped:
        log.info("WKD refresh: the key of %s is no longer used", address)
    return RefreshResult(len(addresses), len(usable), dropped, changed)


async def run_refresh(runtime: Runtime, stop: asyncio.Event, clock: Clock = utcnow) -> None:
    """Refresh now and then every `[keys] wkd_refresh_interval` seconds until `stop`."""
    keys = runtime.settings.keys
    if not keys.wkd:
        return
    while not stop.is_set():
        try:
            result = await asyncio.to_thread(refresh, runtime, clock())
            if result.checked:
                log.info("WKD refresh: %s", result.summary())
        except Exception as exc:  # noqa: BLE001  (a failed refresh must not stop the server)
            if outages.report(exc) is None:  # an outage is said once, not per attempt
                log.error("WKD refresh failed: %s", type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), keys.wkd_refresh_interval)
