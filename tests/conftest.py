"""Shared fixtures: a data dir with cheap Argon2, a real database, a throwaway TLS CA.

The suite runs on SQLite by default and on PostgreSQL when
SEALGATE_TEST_DATABASE_URL is set (each test starts from an empty schema).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import shutil
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import trustme
from hypothesis import settings as hypothesis_settings

from gateway import accounts, db
from gateway.imap.notify import Notifier
from gateway.imap.server import ImapServer
from gateway.inbound import InboundServer
from gateway.runtime import Runtime
from gateway.settings import Settings, load_settings
from gateway.smtp_server import SubmissionServer
from keystore.masterkey import MasterKeyRing, save_ring
from tests.gnupg import stop_agents

pytest_plugins = ["tests.fakes.smarthost"]

# Hypothesis's default deadline (200 ms an example) is a timing assertion: on a loaded
# machine a slow example failed a property that held ("unreliable test timings"). Speed
# is measured by bench/, not by the tests.
hypothesis_settings.register_profile("sealgate", deadline=None)
hypothesis_settings.load_profile("sealgate")


def _worker_database(url: str) -> str:
    """With pytest-xdist, each worker gets a database of its own (test_gw0, test_gw1, ...).

    Every test starts by dropping the schema, so two workers must never share one.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not url or not worker:
        return url
    base = sa.engine.make_url(url)
    name = f"{base.database}_{worker}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.execute(
            sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
        ).scalar()
        if not exists:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


TEST_DATABASE_URL = _worker_database(os.environ.get("SEALGATE_TEST_DATABASE_URL", ""))

# Argon2 at test cost: the production defaults stay in gateway/settings.py.
CHEAP_ARGON2 = {
    "SEALGATE_PASSWORDS_TIME_COST": "1",
    "SEALGATE_PASSWORDS_MEMORY_COST": "256",
    "SEALGATE_PASSWORDS_PARALLELISM": "1",
    "SEALGATE_SECUREPAGE_KDF_TIME_COST": "1",
    "SEALGATE_SECUREPAGE_KDF_MEMORY_COST": "256",
    "SEALGATE_SECUREPAGE_KDF_PARALLELISM": "1",
}


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """`-n auto`: one worker more than cores, as a share of the tests waits on servers,
    subprocesses and a browser (the whole suite: 10 min with 2 workers, 8.5 with 3).
    PYTEST_XDIST_AUTO_NUM_WORKERS still decides when it is set."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None
    return len(os.sched_getaffinity(0)) + 1


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first, so the workers do not wait at the end for one that started late."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def client_ssl_context(tls_ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    tls_ca.configure_trust(ctx)
    return ctx


def reset_database(url: str) -> None:
    """Drop every table so each test starts from migrations, as a fresh install does."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("DROP SCHEMA public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


_HEADS = db.head_revisions()


def empty_database(url: str) -> bool:
    """Empty every table of a PostgreSQL database whose schema is at the newest revision.

    What a test leaves at the newest revision differs from a fresh install only in its
    rows (TRUNCATE takes 50 ms, dropping and migrating 250); anything else (a test of
    the migrations that stopped at an older one) returns False and needs a reset.
    """
    engine = sa.create_engine(url)
    try:
        if db.schema_revisions(engine) != _HEADS:
            return False
        with engine.begin() as conn:
            tables = [t for t in sa.inspect(conn).get_table_names() if t != "alembic_version"]
            names = ", ".join(f'"{table}"' for table in tables)
            conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        return True
    finally:
        engine.dispose()


@pytest.fixture
def test_env(tmp_path: Path) -> dict[str, str]:
    """Environment for settings (and for `sealgate` subprocesses) of one test."""
    env = dict(CHEAP_ARGON2)
    env["SEALGATE_DATA_DIR"] = str(tmp_path / "data")
    env["SEALGATE_SMTP_SUBMISSION_PORT"] = "0"
    env["SEALGATE_SMTP_TLS_PORT"] = "0"
    env["SEALGATE_PORTAL_PORT"] = "0"
    env["SEALGATE_SMTP_INBOUND_PORT"] = "0"
    env["SEALGATE_IMAP_PORT"] = "0"
    env["SEALGATE_IMAP_TLS_PORT"] = "0"
    # The pipeline in process; tests of the worker pool (and `serve` durability) set it.
    env["SEALGATE_WORKERS_PROCESSES"] = "0"
    if TEST_DATABASE_URL:
        env["SEALGATE_DATABASE_URL"] = TEST_DATABASE_URL
    return env


@pytest.fixture
def settings(test_env: dict[str, str], tls_ca: trustme.CA) -> Settings:
    data_dir = Path(test_env["SEALGATE_DATA_DIR"])
    data_dir.mkdir(mode=0o700)
    loaded = load_settings(data_dir, env=test_env)
    cert = tls_ca.issue_cert("localhost", "127.0.0.1")
    cert_path, key_path = loaded.path(loaded.smtp.tls_cert), loaded.path(loaded.smtp.tls_key)
    cert_path.parent.mkdir(parents=True)
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    key_path.chmod(0o600)
    save_ring(data_dir, MasterKeyRing.generate())
    return loaded


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """A SQLite database file brought to the newest schema once per worker: a copy of
    it is what a fresh install's migrations make, in a millisecond instead of 150."""
    if TEST_DATABASE_URL:
        return None
    path = tmp_path_factory.mktemp("schema") / "sealgate.db"
    engine = db.create_engine(f"sqlite:///{path}")
    db.migrate(engine)
    engine.dispose()
    return path


@pytest.fixture
def runtime(settings: Settings, migrated_sqlite: Path | None) -> Iterator[Runtime]:
    if migrated_sqlite is None:
        if not empty_database(TEST_DATABASE_URL):
            reset_database(TEST_DATABASE_URL)
    else:
        shutil.copyfile(migrated_sqlite, settings.data_dir / "sealgate.db")
    rt = Runtime.open(settings)
    db.migrate(rt.engine)  # a no-op unless the database was reset
    yield rt
    rt.close()


@pytest.fixture
def mail_users(runtime: Runtime) -> dict[str, str]:
    """A hosted domain with two accounts; returns address → address password."""
    users = {"alice@example.test": "alice-smtp-pw", "bob@example.test": "bob-smtp-pw"}
    with db.transaction(runtime.sessions) as session:
        accounts.add_domain(session, "example.test", actor="test")
        for address, password in users.items():
            account = accounts.add_account(
                session, runtime.hasher, address, "portal-" + password, actor="test"
            )
            accounts.add_address(session, runtime.hasher, address, account, password, actor="test")
    return users


class LoopThread:
    """An asyncio loop in a thread, so blocking test clients can talk to async servers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


@pytest.fixture
def submission_server(runtime: Runtime, loop_thread: LoopThread) -> Iterator[SubmissionServer]:
    """The real submission server (STARTTLS and implicit TLS) on free ports."""
    server = SubmissionServer(runtime)
    loop_thread.run(server.start())
    yield server
    loop_thread.run(server.stop(grace=5))


@pytest.fixture
def inbound(
    runtime: Runtime, mail_users: dict[str, str], loop_thread: LoopThread
) -> Iterator[InboundServer]:
    """The real inbound (MX) server on a free port, with the hosted users of `mail_users`."""
    server = InboundServer(runtime)
    loop_thread.run(server.start())
    yield server
    loop_thread.run(server.stop(grace=5))


@pytest.fixture
def imap_server(runtime: Runtime, loop_thread: LoopThread) -> Iterator[ImapServer]:
    """The real IMAP server (STARTTLS and implicit TLS) on free ports, as `serve` runs it."""
    server = ImapServer(runtime, Notifier())
    loop_thread.run(server.start())
    yield server
    loop_thread.run(server.stop())


@pytest.fixture(autouse=True)
def _stop_gpg_agents_after_test() -> Iterator[None]:
    """GnuPG homes made by a test leave an agent running; stop them with the test."""
    yield
    stop_agents()


# Every this many tests, the collection at teardown looks at every object again.
FULL_COLLECTION_EVERY = 50
_tests_run = itertools.count(1)


@pytest.fixture(autouse=True)
def _collect_garbage_after_test() -> Iterator[None]:
    """Collect garbage at teardown, so a leaked socket fails the test that leaked it.

    Without this, the ResourceWarning for an unclosed transport fires whenever the
    collector happens to run, and fails whichever test is running then. What survives
    the collection is frozen, so the next one looks only at what the next test made,
    not again at hundreds of thousands of imported and cached objects; now and then
    everything is unfrozen, so cycles that died later are freed after all.
    """
    yield
    if next(_tests_run) % FULL_COLLECTION_EVERY == 0:
        gc.unfreeze()
    gc.collect()
    gc.freeze()
