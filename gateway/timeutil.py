"""Aware UTC time, and the clock type that logic takes as an argument (tests set it)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

# One column type for aware UTC datetimes, defined where the lowest layer can use it.
from keystore.models import UTCDateTime as UTCDateTime

Clock = Callable[[], dt.datetime]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def describe_seconds(seconds: float) -> str:
    """A span as an admin reads it in a message: "5 day(s)", "4 hour(s)", "90 s"."""
    days, hours = seconds / 86400, seconds / 3600
    if days >= 1 and days == int(days):
        return f"{int(days)} day(s)"
    return f"{hours:g} hour(s)" if hours >= 1 else f"{seconds:g} s"
