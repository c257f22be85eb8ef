"""gateway.outages: what counts as an outage, and how often the log says so.

The log says an outage when it starts, again every ten minutes while it lasts or when
its reason changes, and when it ends; never with a traceback, never with a statement's
bound parameters (they can quote mail, hashes or tokens).
"""

from __future__ import annotations

import errno
import logging
import sqlite3
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from gateway import db, outages
from gateway.outages import Kind, Outage, Watch
from gateway.settings import SettingsError, load_settings
from keystore.masterkey import RingFile, RingUnavailable


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "gateway.outages"]


def test_said_once_again_every_ten_minutes_on_a_new_reason_and_at_the_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    clock = Clock()
    watch = Watch(clock)
    refused = Outage(Kind.DATABASE, "connection refused")
    for _ in range(50):
        watch.failed(refused)
        clock.now += 10  # 500 s in all: under ten minutes
    assert len(lines(caplog)) == 1
    clock.now += 100
    watch.failed(refused)
    assert (
        lines(caplog)[1] == "outage: database unavailable (connection refused), for 10 minutes now"
    )
    watch.failed(Outage(Kind.DATABASE, "connection timeout expired"))
    assert lines(caplog)[2] == (
        "outage: database unavailable (connection timeout expired) (the reason changed)"
    )
    watch.failed(Outage(Kind.RING, "master.keys does not exist"))
    assert len(lines(caplog)) == 4
    watch.ended(Kind.DATABASE, Kind.DISK_FULL)
    watch.ended(Kind.DATABASE)
    assert lines(caplog)[4] == "outage ended: database unavailable, after 600 s"
    assert watch.current == frozenset({Kind.RING})
    assert all(not r.exc_info for r in caplog.records)


def _sqlite_error(path: Path) -> sa.exc.DBAPIError:
    path.mkdir()
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        with pytest.raises(sa.exc.OperationalError) as caught, engine.connect():
            pass
    finally:
        engine.dispose()
    return caught.value


def test_what_counts(tmp_path: Path) -> None:
    assert outages.classify(_sqlite_error(tmp_path / "db")) == Outage(
        Kind.DATABASE, "SQLITE_CANTOPEN"
    )
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode, full.sqlite_errorname = 13, "SQLITE_FULL"  # type: ignore[attr-defined]
    assert outages.classify(sa.exc.OperationalError("INSERT", {}, full)) == Outage(
        Kind.DISK_FULL, "SQLITE_FULL"
    )
    assert outages.classify(OSError(errno.ENOSPC, "No space left on device")) == Outage(
        Kind.DISK_FULL, "ENOSPC"
    )
    missing = RingFile(tmp_path)
    with pytest.raises(RingUnavailable) as caught:
        missing.get()
    found = outages.classify(caught.value)
    assert found is not None and found.kind is Kind.RING
    # Raised from inside another error, as a pipeline step may.
    try:
        try:
            raise OSError(errno.ENOSPC, "full")
        except OSError as inner:
            raise RuntimeError("writing failed") from inner
    except RuntimeError as outer:
        assert outages.classify(outer) == Outage(Kind.DISK_FULL, "ENOSPC")
    # Not outages: a bug, a constraint, a deadlock the database resolves.
    assert outages.classify(ValueError("x")) is None
    assert outages.classify(sa.exc.IntegrityError("INSERT", {}, Exception("UNIQUE"))) is None
    deadlock = psycopg.errors.DeadlockDetected("deadlock detected")
    assert outages.classify(sa.exc.OperationalError("UPDATE", {}, deadlock)) is None


def test_a_lost_postgresql_connection_names_no_parameter() -> None:
    lost = psycopg.OperationalError("server closed the connection unexpectedly\n\tdetail")
    error = sa.exc.OperationalError(
        "INSERT INTO mailbox_messages (raw) VALUES (%(raw)s)", {"raw": b"secret body"}, lost
    )
    found = outages.classify(error)
    assert found == Outage(Kind.DATABASE, "server closed the connection unexpectedly")
    assert "secret" not in str(found) and "INSERT" not in str(found)
    disk = psycopg.errors.DiskFull("could not extend file")
    assert outages.classify(sa.exc.OperationalError("INSERT", {}, disk)) == Outage(
        Kind.DISK_FULL, "SQLSTATE 53100"
    )
    shutdown = psycopg.errors.AdminShutdown("terminating connection")
    assert outages.classify(sa.exc.OperationalError("SELECT", {}, shutdown)) == Outage(
        Kind.DATABASE, "SQLSTATE 57P01"
    )


def test_dead_server_options_leave_what_the_url_names() -> None:
    url = "postgresql+psycopg://sealgate@db.example.org/sealgate?connect_timeout=30"
    options = db.dead_server_options(url, 12)
    assert options == {
        "keepalives": 1,
        "keepalives_idle": 4,
        "keepalives_interval": 2,
        "keepalives_count": 3,
        "tcp_user_timeout": 12000,
    }
    assert db.dead_server_options(url, 0) == {}


@pytest.mark.parametrize("value", ["1", "2", "-1"])
def test_dead_server_seconds_must_be_off_or_at_least_three(tmp_path: Path, value: str) -> None:
    with pytest.raises(SettingsError, match=r"\[database\] dead_server_seconds"):
        load_settings(tmp_path, env={"SEALGATE_DATABASE_DEAD_SERVER_SECONDS": value})
