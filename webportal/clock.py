"""The portal's clock: `now()` in views, settable per app so tests can move time.

Logic takes the time as an argument; views read it here once per decision, so
a test can run a real server (or a browser against it) at a chosen moment.
"""

from __future__ import annotations

import datetime as dt

from flask import Flask, current_app

from gateway.timeutil import Clock, utcnow

CLOCK_KEY = "sealgate.clock"


def set_clock(app: Flask, clock: Clock) -> None:
    app.extensions[CLOCK_KEY] = clock


def now() -> dt.datetime:
    clock: Clock = current_app.extensions.get(CLOCK_KEY, utcnow)
    return clock()
