"""Threat: another local user reads the SQLite database or its WAL.

SQLite creates the database with the process's umask and gives its -wal and -shm
files the database's mode, so whoever opens the engine first decides them all: the
engine itself creates the file 0600, whatever umask the process runs under.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway import db


@pytest.fixture
def loose_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("loose_umask")
def test_a_new_sqlite_database_and_its_wal_are_the_owners_only(tmp_path: Path) -> None:
    path = tmp_path / "sealgate.db"
    engine = db.create_engine(f"sqlite:///{path}")
    try:
        with db.transaction(db.session_factory(engine)) as session:
            session.execute(sa.text("CREATE TABLE t (x INTEGER)"))
        made = sorted(tmp_path.iterdir())
        assert [p.name for p in made] == [
            "sealgate.db",
            "sealgate.db-shm",
            "sealgate.db-wal",
            "sealgate.db-writers.lock",
        ]
        assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in made} == {
            p.name: 0o600 for p in made
        }
    finally:
        engine.dispose()


def test_an_existing_database_keeps_its_content(tmp_path: Path) -> None:
    path = tmp_path / "sealgate.db"
    engine = db.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
        conn.execute(sa.text("INSERT INTO t VALUES (7)"))
    engine.dispose()
    engine = db.create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT x FROM t")).scalar() == 7
    finally:
        engine.dispose()


def test_sqlite_overwrites_deleted_content(tmp_path: Path) -> None:
    """Deleted rows must not linger in free pages whichever SQLite build runs: the
    engine turns secure_delete on itself rather than trust the build's default."""
    engine = db.create_engine(f"sqlite:///{tmp_path / 'sealgate.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA secure_delete").scalar() == 1
    finally:
        engine.dispose()
