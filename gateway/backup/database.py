"""Copy the database out and back: SQLite's online backup API, or pg_dump / pg_restore.

SQLite's backup API copies a consistent snapshot while the gateway keeps writing
(page by page, so progress can be shown). For PostgreSQL the standard tools do
the work; the password goes to them in the environment, never on the command line.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import urllib.parse
from collections.abc import Callable, Iterable
from pathlib import Path

import sqlalchemy as sa
import sqlalchemy.orm as so

from gateway.backup.manifest import BackupError
from gateway.db import create_private_file
from keystore import ringcheck
from keystore.models import StoredKey

SQLITE_FILE = "sealgate.db"
PG_FILE = "database.pgdump"
PAGES_PER_STEP = 256

Progress = Callable[[int, int], None]  # (pages done, pages total)


def kind(url: str) -> str:
    name = sa.engine.make_url(url).get_backend_name()
    if name not in ("sqlite", "postgresql"):
        raise BackupError(f"cannot back up a {name} database")
    return name


def sqlite_path(url: str) -> Path:
    database = sa.engine.make_url(url).database
    if not database or database == ":memory:":
        raise BackupError("the SQLite database is in memory; nothing to back up")
    return Path(database)


def _sqlite_copy(source: Path, target: Path, progress: Progress) -> None:
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    create_private_file(target)
    dst = sqlite3.connect(target)
    try:
        src.backup(
            dst,
            pages=PAGES_PER_STEP,
            progress=lambda _status, remaining, total: progress(total - remaining, total),
        )
    finally:
        dst.close()
        src.close()


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    parsed = sa.engine.make_url(url)
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    plain = parsed.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} is not installed (Debian: apt-get install postgresql-client)")
    return found


def dump(url: str, directory: Path, progress: Progress) -> str:
    """Write the database into `directory`; the file name it used."""
    if kind(url) == "sqlite":
        source = sqlite_path(url)
        if not source.exists():
            raise BackupError(f"{source} does not exist")
        _sqlite_copy(source, directory / SQLITE_FILE, progress)
        return SQLITE_FILE
    target, env = _libpq(url)
    progress(0, 1)
    result = subprocess.run(
        [_tool("pg_dump"), "--format=custom", "--no-owner", "--file", str(directory / PG_FILE),
         target],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise BackupError(f"pg_dump failed: {result.stderr.strip()[:500]}")
    progress(1, 1)
    return PG_FILE


def load(url: str, directory: Path, name: str, progress: Progress) -> None:
    """Replace the database at `url` with the copy `name` in `directory`."""
    if kind(url) == "sqlite":
        if name != SQLITE_FILE:
            raise BackupError("the backup holds a PostgreSQL dump; [database] url is SQLite")
        target = sqlite_path(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Replaced whole (the caller checked it is empty or was told to): with its WAL
        # and shared-memory files, so no stale page of the old database survives.
        for suffix in ("", "-wal", "-shm"):
            target.with_name(target.name + suffix).unlink(missing_ok=True)
        _sqlite_copy(directory / name, target, progress)
        return
    if name != PG_FILE:
        raise BackupError("the backup holds an SQLite database; [database] url is PostgreSQL")
    target_url, env = _libpq(url)
    progress(0, 1)
    result = subprocess.run(
        [_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--no-privileges",
         "--single-transaction", "--dbname", target_url, str(directory / name)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise BackupError(f"pg_restore failed: {result.stderr.strip()[:500]}")
    progress(1, 1)


def tables_not_in_archive(url: str, directory: Path, name: str) -> list[str]:
    """The tables of the PostgreSQL database at `url` that the archive `name` lacks.

    `pg_restore --clean` drops and remakes the archive's own tables only: a table
    made after the backup (a newer schema's, which may refer to the archive's
    tables) stays, and pg_restore fails on it half-way (dropping `accounts` under a
    foreign key), or the migrations after the load meet it. SQLite needs no such
    check: its file is replaced whole.
    """
    if kind(url) != "postgresql":
        return []
    result = subprocess.run(
        [_tool("pg_restore"), "--list", str(directory / name)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise BackupError(f"pg_restore cannot read {name}: {result.stderr.strip()[:500]}")
    archived = {
        match.group(1).strip('"')
        for match in map(_TOC_TABLE.match, result.stdout.splitlines())
        if match
    }
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            present = set(sa.inspect(conn).get_table_names())
    except sa.exc.OperationalError:
        return []  # no database to restore over yet: pg_restore says why, as before
    finally:
        engine.dispose()
    return sorted(present - archived)


# "215; 1259 16386 TABLE public accounts owner": one line of `pg_restore --list`.
_TOC_TABLE = re.compile(r"^\d+; \d+ \d+ TABLE \S+ (\S+) ")


# --- the backup's own keys, read without loading it -------------------------------------


def key_sample(
    directory: Path, name: str, versions: Iterable[int], limit: int = ringcheck.RING_CHECK_SAMPLE
) -> dict[int, list[ringcheck.WrappedKey]]:
    """Up to `limit` of the oldest address keys per master-key version in the backup's
    database copy `name`, read without touching the live database or the backup."""
    if name == SQLITE_FILE:
        return _sqlite_key_sample(directory / name, versions, limit)
    return _pg_key_sample(directory / name, versions, limit)


def _sqlite_key_sample(
    path: Path, versions: Iterable[int], limit: int
) -> dict[int, list[ringcheck.WrappedKey]]:
    # immutable: no -wal or -shm file is made next to the copy, nothing in it changes.
    uri = f"file:{urllib.parse.quote(str(path))}?mode=ro&immutable=1"
    engine = sa.create_engine(
        "sqlite://", creator=lambda: sqlite3.connect(uri, uri=True), poolclass=sa.pool.NullPool
    )
    try:
        if not sa.inspect(engine).has_table(StoredKey.__tablename__):
            return {}
        with so.Session(engine) as session:
            return ringcheck.sample_keys(session, versions, limit)
    except sa.exc.SQLAlchemyError as exc:
        reason = str(exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc).splitlines()[0]
        raise BackupError(f"{path.name} cannot be read ({reason})") from None
    finally:
        engine.dispose()


def schema_revisions(directory: Path, name: str) -> frozenset[str]:
    """The Alembic revisions the backup's database copy `name` is at, read without
    loading it (empty when it has no alembic_version table)."""
    if name == SQLITE_FILE:
        uri = f"file:{urllib.parse.quote(str(directory / name))}?mode=ro&immutable=1"
        try:
            with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
                found = conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?",
                    (_ALEMBIC_TABLE,),
                ).fetchone()
                if found is None:
                    return frozenset()
                rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        except sqlite3.Error as exc:
            raise BackupError(f"{name} cannot be read ({exc})") from None
        return frozenset(str(row[0]) for row in rows)
    command = [_tool("pg_restore"), "--data-only", "--table", _ALEMBIC_TABLE, "--file", "-",
               str(directory / name)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0:
        reason = result.stderr.decode("utf-8", "replace").strip()[:500]
        raise BackupError(f"pg_restore cannot read {name}: {reason}")
    revisions: set[str] = set()
    in_copy = False
    for line in result.stdout.splitlines():
        if not in_copy:
            match = _COPY_HEADER.match(line)
            in_copy = bool(match and match.group(1).decode().strip('"') == _ALEMBIC_TABLE)
        elif line == b"\\.":
            in_copy = False
        else:
            revisions.add(_copy_field(line).decode("utf-8", "replace"))
    return frozenset(revisions)


_ALEMBIC_TABLE = "alembic_version"
_COPY_ESCAPES = {ord(k): v for k, v in zip("bfnrtv", b"\b\f\n\r\t\v", strict=True)}
_OCTAL = frozenset(b"01234567")
_HEX = frozenset(b"0123456789abcdefABCDEF")


def _copy_field(raw: bytes) -> bytes:
    """One field of pg_dump's COPY text format, unescaped (`\\N`, NULL, is not expected)."""
    if b"\\" not in raw:
        return raw
    out = bytearray()
    i = 0
    while i < len(raw):
        c = raw[i]
        if c != 0x5C or i + 1 == len(raw):
            out.append(c)
            i += 1
            continue
        n = raw[i + 1]
        if n in _COPY_ESCAPES:
            out.append(_COPY_ESCAPES[n])
            i += 2
        elif n in _OCTAL:
            j = i + 1
            while j < min(i + 4, len(raw)) and raw[j] in _OCTAL:
                j += 1
            out.append(int(raw[i + 1 : j], 8) & 0xFF)
            i = j
        elif n == ord("x") and i + 2 < len(raw) and raw[i + 2] in _HEX:
            j = i + 2
            while j < min(i + 4, len(raw)) and raw[j] in _HEX:
                j += 1
            out.append(int(raw[i + 2 : j], 16))
            i = j
        else:
            out.append(n)
            i += 2
    return bytes(out)


def _bytea(text: bytes) -> bytes:
    """A bytea value as PostgreSQL prints it: hex (`\\x0a1b…`) or the old escape format."""
    if text.startswith(b"\\x"):
        return bytes.fromhex(text[2:].decode("ascii"))
    out = bytearray()
    i = 0
    while i < len(text):
        if text[i] == 0x5C and text[i + 1 : i + 2] == b"\\":
            out.append(0x5C)
            i += 2
        elif text[i] == 0x5C and len(text) >= i + 4:
            out.append(int(text[i + 1 : i + 4], 8))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return bytes(out)


def _pg_key_sample(
    path: Path, versions: Iterable[int], limit: int
) -> dict[int, list[ringcheck.WrappedKey]]:
    """pg_restore prints the keys table's COPY data from the archive (no database is
    involved); it is read as it streams."""
    command = [_tool("pg_restore"), "--data-only", "--table", StoredKey.__tablename__,
               "--file", "-", str(path)]  # fmt: skip
    # stderr goes to a file, not a pipe: a full pipe would stall pg_restore.
    with (
        tempfile.TemporaryFile() as errors,
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors) as process,
    ):
        assert process.stdout is not None
        try:
            sample = copy_key_sample(process.stdout, versions, limit)
        except ValueError:
            process.kill()
            raise BackupError(f"{path.name}: the keys table's data cannot be read") from None
        finally:
            process.stdout.close()
            process.wait()
        errors.seek(0)
        reason = errors.read().decode("utf-8", "replace").strip()[:500]
    if process.returncode != 0:
        raise BackupError(f"pg_restore cannot read {path.name}: {reason}")
    return sample


def copy_key_sample(
    lines: Iterable[bytes], versions: Iterable[int], limit: int
) -> dict[int, list[ringcheck.WrappedKey]]:
    """The `limit` lowest-id keys per version from pg_restore's SQL output (the keys
    table's COPY block); {} when the archive has no keys table. ValueError when the
    block is not what pg_dump writes."""
    wanted = set(versions)
    kept: dict[int, list[tuple[int, list[bytes]]]] = {v: [] for v in wanted}
    columns: list[str] = []
    in_copy = False
    for line in lines:
        line = line.rstrip(b"\n")
        if not in_copy:
            match = _COPY_HEADER.match(line)
            if match and match.group(1).decode().strip('"') == StoredKey.__tablename__:
                columns = [c.strip().strip('"') for c in match.group(2).decode().split(",")]
                in_copy = True
            continue
        if line == b"\\.":
            in_copy = False
            continue
        fields = line.split(b"\t")
        if len(fields) != len(columns):
            raise ValueError("a COPY row with the wrong number of fields")
        row = dict(zip(columns, fields, strict=True))
        version = int(row["master_version"])
        if version not in wanted:
            continue
        heap = kept[version]
        heapq.heappush(heap, (-int(row["id"]), fields))
        if len(heap) > limit:
            heapq.heappop(heap)  # the highest id
    if not columns:
        return {}
    address, fingerprint, blob = (
        columns.index(name) for name in ("address", "fingerprint", "wrapped_secret")
    )
    return {
        version: [
            ringcheck.WrappedKey(
                _copy_field(fields[address]).decode("utf-8"),
                _copy_field(fields[fingerprint]).decode("ascii"),
                _bytea(_copy_field(fields[blob])),
            )
            for _neg_id, fields in sorted(heap, reverse=True)
        ]
        for version, heap in kept.items()
    }


_COPY_HEADER = re.compile(rb"^COPY (?:[\w\"]+\.)?([\w\"]+) \(([^)]*)\) FROM stdin;$")
