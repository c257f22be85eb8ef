"""Aware UTC time, and the clock type that logic takes as an argument (tests set it)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

# One column type for aware UTC datetimes, defined where the lowest layer can use it.
from keystore.models import UTCDateTime as UTCDateTime

Clock = Callable[[], dt.datetime]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
