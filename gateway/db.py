"""Database engine, sessions and schema migrations.

SQLite is the zero-setup default; it runs in WAL mode with `synchronous=FULL` so a
committed transaction (and so every `250` the SMTP server gives) is on disk; the
serve process and its pipeline workers write to it in turn under SQLite's own
lock. On PostgreSQL several gateway and portal processes share one database.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import sqlalchemy.orm as so

if TYPE_CHECKING:
    # Alembic is imported where migrations run: every CLI command opens the
    # database, few migrate it.
    from alembic.config import Config as AlembicConfig

from gateway import driversql, outages
from gateway.imap import folders
from gateway.settings import DEAD_SERVER_SECONDS
from keystore.masterkey import MasterKeyError, MasterKeyRing, RingFile

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
READ_ONLY = "sealgate_read_only"


def create_engine(
    url: str,
    *,
    echo: bool = False,
    pre_ping: bool = True,
    application_name: str | None = None,
    dead_server_seconds: int = DEAD_SERVER_SECONDS,
) -> sa.Engine:
    """pre_ping: test each pooled PostgreSQL connection before use (one round trip per
    transaction), so a database restart costs no request. The SMTP worker processes
    turn it off: for them the round trip was one in seven per message, and a message
    that meets a dead connection is answered 451 before anything is written, retried
    by its client, and finds the pool renewed.

    application_name: what PostgreSQL shows for these connections in pg_stat_activity.
    Each SMTP worker process names its own, so that serve can find (and end) the
    sessions of a worker that died (gateway.workers). Not used on SQLite.

    dead_server_seconds: on PostgreSQL, how soon a server that stops answering
    without closing the connection counts as down (`dead_server_options`)."""
    if url.startswith("sqlite"):
        database = sa.engine.make_url(url).database
        if database and database != ":memory:" and not database.startswith("file:"):
            create_private_file(Path(database))
        # hide_parameters: a logged SQL error must not carry bound values (raw mail, hashes).
        engine = sa.create_engine(
            url,
            echo=echo,
            hide_parameters=True,
            connect_args={"timeout": 30, "check_same_thread": False},
        )
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite opens transactions lazily and never for SELECT; take the write
        # lock at BEGIN instead so two writers do not deadlock on lock upgrade.
        sa.event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    connect_args: dict[str, Any] = dead_server_options(url, dead_server_seconds)
    if application_name is not None:
        connect_args["application_name"] = application_name
    return sa.create_engine(
        url,
        echo=echo,
        pool_pre_ping=pre_ping,
        hide_parameters=True,
        connect_args=connect_args,
    )


def dead_server_options(url: str, seconds: int) -> dict[str, Any]:
    """libpq options under which a PostgreSQL server that stops answering, without
    closing the connection (its host paused, the network cut), is given up on after
    about `seconds`, and the request meets an OperationalError (an outage,
    gateway.outages) instead of hanging.

    Without them a connection attempt waits out the kernel's SYN retries (about two
    minutes), or for ever once TCP is up and the server says nothing; a query on an
    open connection waits for TCP's retransmissions (about 15 minutes). Here:
    `connect_timeout` bounds a connection attempt; keepalives find a silent peer of an
    idle or waiting connection (idle a third of the time, then 3 probes a sixth apart);
    `tcp_user_timeout` bounds how long sent data may go unacknowledged. An option the
    URL already names is left to the URL. 0: none set."""
    if seconds <= 0:
        return {}
    given = set(sa.engine.make_url(url).query)
    options: dict[str, Any] = {
        "connect_timeout": seconds,
        "keepalives": 1,
        "keepalives_idle": max(1, seconds // 3),
        "keepalives_interval": max(1, seconds // 6),
        "keepalives_count": 3,
        "tcp_user_timeout": seconds * 1000,
    }
    return {name: value for name, value in options.items() if name not in given}


def create_private_file(path: Path) -> None:
    """Create `path` empty and mode 0600 unless it exists. SQLite would create its
    database with the process's umask (often 0644), and gives the -wal and -shm files
    it makes later the database's own mode: created here, none of them is readable by
    others. Any failure (it exists, no such directory, a read-only disk) is left for
    SQLite to meet and report when it connects."""
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))


# Rows whose message column holds this much or more are written in two steps on SQLite.
LARGE_BLOB = 256 * 1024


def insert_rows(
    connection: sa.Connection, table: sa.Table, rows: list[dict[str, Any]], *, blob: str = "raw"
) -> None:
    """INSERT `rows` into `table` in one statement; but on SQLite a row whose `blob`
    column holds LARGE_BLOB bytes or more goes in with a zeroblob that is then filled
    through SQLite's incremental blob I/O. A bound value is copied twice inside SQLite
    (the binding, then the record built from it): a 34 MiB encrypted message cost
    70 MiB more at its commit; this way nothing beyond its own bytes. The zeroblob
    stays unmaterialised because `blob` is the table's last column on SQLite
    (migration 0014). Same transaction, same rollback."""
    if connection.dialect.name != "sqlite":
        _insert(connection, table, rows)
        return
    _insert(connection, table, [row for row in rows if len(row[blob]) < LARGE_BLOB])
    for row in rows:
        data = row[blob]
        if len(data) < LARGE_BLOB:
            continue
        others = {name: value for name, value in row.items() if name != blob}
        placeholder = sa.insert(table).values({blob: sa.func.zeroblob(len(data))})
        rowid = connection.execute(placeholder, others).lastrowid
        driver = connection.connection.driver_connection
        with driver.blobopen(table.name, blob, rowid) as handle:  # type: ignore[union-attr]
            handle.write(data)


_INSERTS: dict[str, sa.Insert] = {}


def _insert(connection: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """The rows (all with the same keys) in one statement, through the driver's cursor."""
    if not rows:
        return
    statement = _INSERTS.get(table.name)
    if statement is None or statement.table is not table:
        statement = _INSERTS[table.name] = sa.insert(table)
    driversql.run(connection, statement, rows, columns=tuple(rows[0]))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    # Deleted rows (purged mail log entries, forgotten secure pages, expunged mail) are
    # overwritten with zeros instead of lingering in free pages. Debian builds SQLite
    # with this on; other builds (python.org's, Homebrew's) do not.
    cur.execute("PRAGMA secure_delete=ON")
    cur.close()


BUSY_TIMEOUT_MS = 30000
# How long a checkpoint waits for readers to leave the WAL: it holds the write lock
# meanwhile, so briefly; a busy checkpoint is tried again after the next purge.
CHECKPOINT_BUSY_MS = 1000


def checkpoint(factory: so.sessionmaker[so.Session]) -> bool:
    """On a SQLite file: copy the WAL into the database and truncate it to zero bytes;
    whether it got through (False: a reader kept it from finishing; try again later).

    The WAL keeps the pages that purges and deletions overwrote until it is reused,
    and SQLite's own checkpoints never shrink it: deleted mail log entries and secure
    pages stayed readable in the -wal file, and its disk was never returned. Run after
    every purge (`sealgate purge` and serve's periodic purges). It takes the writer's
    turn, so sealgate's writers wait in the kernel while it runs. A no-op elsewhere.
    """
    bind = factory.kw.get("bind")
    if not isinstance(bind, sa.Engine) or bind.dialect.name != "sqlite":
        return True
    if bind.url.database in (None, "", ":memory:"):
        return True
    with _sqlite_writer_turn(factory), bind.connect() as conn:
        driver: Any = conn.connection.driver_connection
        driver.execute(f"PRAGMA busy_timeout={CHECKPOINT_BUSY_MS}")
        try:
            busy, _frames, _copied = driver.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            driver.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return not busy


def _sqlite_begin_immediate(conn: sa.Connection) -> None:
    if conn.get_execution_options().get(READ_ONLY):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


RING_INFO_KEY = "sealgate.master_ring"


def session_factory(
    engine: sa.Engine, *, ring: RingFile | None = None
) -> so.sessionmaker[so.Session]:
    """Sessions for `engine`; with `ring`, each session can reach the master key ring.

    Code that must seal a secret deep inside a shared function (a domain's DKIM
    keys, made in `accounts.add_domain`, which the CLI and the admin console both
    call) finds the ring through `session_ring` instead of a new parameter on every
    caller.
    """
    info = {RING_INFO_KEY: ring} if ring is not None else {}
    factory = so.sessionmaker(engine, expire_on_commit=False, info=info)
    # Every writer's session gives messages their folder UIDs (see gateway.imap.folders).
    folders.install(factory)
    return factory


def session_ring_file(session: so.Session) -> RingFile | None:
    """The ring file of the Runtime that made `session`, or None."""
    ring = session.info.get(RING_INFO_KEY)
    return ring if isinstance(ring, RingFile) else None


def session_ring(session: so.Session) -> MasterKeyRing | None:
    """The ring of the Runtime that made `session`, or None (also when it cannot be read)."""
    ring = session_ring_file(session)
    if ring is None:
        return None
    try:
        return ring.get()
    except MasterKeyError:
        return None


_turns = threading.local()


@contextlib.contextmanager
def _sqlite_writer_turn(factory: so.sessionmaker[so.Session]) -> Iterator[None]:
    """On a SQLite file, wait for the write lock in the kernel rather than in SQLite.

    SQLite's lock (BEGIN IMMEDIATE) decides who writes. But a writer that finds it
    taken waits in SQLite's busy handler, which sleeps in growing steps (up to
    100 ms) and does not wake when the lock is freed: with serve and its worker
    processes writing at once that is a long tail and lost commits (bench: three
    writer processes, p99 wait 250 ms and 500 commits in 6 s; with this, 112 ms
    and 830, as good as one process's threads behind a lock). An advisory
    `flock` on a file beside the database is shared by every process that opens
    it, is handed on as soon as it is released, and is dropped by the kernel when
    its holder dies. Re-entrant per thread.
    """
    bind = factory.kw.get("bind")
    path = bind.url.database if isinstance(bind, sa.Engine) else None
    if not path or bind is None or bind.dialect.name != "sqlite" or path == ":memory:":
        yield
        return
    held: dict[str, int] = _turns.__dict__.setdefault("held", {})
    if held.get(path):
        held[path] += 1
        try:
            yield
        finally:
            held[path] -= 1
        return
    fd = os.open(f"{path}-writers.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        held[path] = 1
        try:
            yield
        finally:
            held[path] = 0
    finally:
        os.close(fd)  # releases the lock


def holds_writer_turn(factory: so.sessionmaker[so.Session]) -> bool:
    """Whether this thread is inside a write transaction's turn on `factory`'s SQLite file."""
    bind = factory.kw.get("bind")
    path = bind.url.database if isinstance(bind, sa.Engine) else None
    held: dict[str, int] = _turns.__dict__.get("held", {})
    return bool(path and held.get(path))


@contextlib.contextmanager
def transaction(factory: so.sessionmaker[so.Session]) -> Iterator[so.Session]:
    """One unit of work: commit on success, roll back on any error.

    Writers in every process (serve, its workers, the CLI) take turns through the
    database: on SQLite, its write lock taken at BEGIN IMMEDIATE (waited for in
    the kernel, see `_sqlite_writer_turn`); on PostgreSQL, row locks. Submissions
    reach here in groups (gateway.groupcommit), so few writers wait at once.
    """
    with _sqlite_writer_turn(factory), factory() as session, session.begin():
        yield session
    # Committed: the database (and the disk under it) is back, if it was away.
    outages.ended(outages.Kind.DATABASE, outages.Kind.DISK_FULL)


@contextlib.contextmanager
def read_only(factory: so.sessionmaker[so.Session]) -> Iterator[so.Session]:
    """A transaction that only reads: on SQLite it does not take the write lock."""
    with factory() as session, session.begin():
        session.connection(execution_options={READ_ONLY: True})
        yield session
    outages.ended(outages.Kind.DATABASE)


def alembic_config(engine: sa.Engine) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Alembic's options go through configparser, which reads "%" as interpolation: a
    # data dir or a password with "%" or non-ASCII (percent-encoded in the URL) broke
    # every migration with a traceback.
    url = engine.url.render_as_string(hide_password=False).replace("%", "%%")
    cfg.set_main_option("sqlalchemy.url", url)
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: sa.Engine) -> None:
    """Bring the schema to the newest migrations (idempotent).

    "heads", not "head": work on separate areas may add migrations side by side
    (branches off one parent) until a merge revision joins them.
    """
    from alembic import command

    command.upgrade(alembic_config(engine), "heads")


def schema_revisions(engine: sa.Engine) -> frozenset[str]:
    """The revisions the database is at; empty when it was never migrated."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return frozenset()
        return frozenset(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())


def head_revisions() -> frozenset[str]:
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return frozenset(ScriptDirectory.from_config(cfg).get_heads())


def unknown_revisions(revisions: frozenset[str]) -> frozenset[str]:
    """Those of `revisions` that this release's migrations do not know (a newer release
    made them). Every command asks, so the common case is cheap: each migration's
    revision is the number its file name starts with (tests/gateway/test_migrations.py
    holds every file to it), and revisions found among the file names are known
    without Alembic's walk (about 60 ms: it imports every migration). Only a revision
    not found there is looked up in Alembic's own answer."""
    if revisions <= migration_file_revisions():
        return frozenset()
    return revisions - known_revisions()


def migration_file_revisions() -> frozenset[str]:
    """The revisions the migration files' names say ("0019_served_message_sizes.py")."""
    return frozenset(
        path.name.partition("_")[0] for path in (MIGRATIONS_DIR / "versions").glob("[0-9]*_*.py")
    )


def known_revisions() -> frozenset[str]:
    """Every revision this release's migrations know (the heads and all before them)."""
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return frozenset(rev.revision for rev in ScriptDirectory.from_config(cfg).walk_revisions())
