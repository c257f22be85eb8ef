"""The Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from gateway import db
from gateway.models import Base
from gateway.runtime import Runtime
from gateway.settings import Settings
from keystore.models import ExternalKey, KeystoreBase
from tests.conftest import TEST_DATABASE_URL, reset_database


def test_migrated_schema_matches_the_models(runtime: Runtime) -> None:
    with runtime.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn), [Base.metadata, KeystoreBase.metadata]
        )
    assert diff == []


def test_database_is_at_every_head(runtime: Runtime) -> None:
    assert db.schema_revisions(runtime.engine) == db.head_revisions()
    db.migrate(runtime.engine)  # a second run changes nothing
    assert db.schema_revisions(runtime.engine) == db.head_revisions()


def test_each_migration_file_is_named_for_its_revision() -> None:
    """db.unknown_revisions takes the file names for Alembic's answer: a migration whose
    revision is not its file's number would make the newer-release check wrong."""
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(db.MIGRATIONS_DIR))
    for script in ScriptDirectory.from_config(cfg).walk_revisions():
        assert script.path is not None
        assert Path(script.path).name.startswith(f"{script.revision}_"), script.path
    assert db.migration_file_revisions() == db.known_revisions()


def test_unknown_revisions_are_those_no_migration_makes() -> None:
    heads = db.head_revisions()
    assert db.unknown_revisions(heads) == frozenset()
    assert db.unknown_revisions(frozenset({"0001"})) == frozenset()
    assert db.unknown_revisions(heads | {"9999", "ab12cd"}) == {"9999", "ab12cd"}


def test_upgrading_an_existing_database_keeps_rows_that_refer_to_altered_tables(
    settings: Settings,
) -> None:
    """SQLite batch mode rebuilds a table; with foreign keys on, that used to cascade-delete
    every row referring to it (here: a user's app password) during an upgrade."""
    if TEST_DATABASE_URL:
        reset_database(TEST_DATABASE_URL)
    engine = db.create_engine(settings.database_url)
    cfg = db.alembic_config(engine)
    command.upgrade(cfg, "0003")  # the account-security branch only, as an older install
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO accounts (id, email, password_hash, is_admin, language, created_at)"
                " VALUES (1, 'a@x.test', 'h', false, 'en', :n)"
            ),
            {"n": now},
        )
        conn.execute(
            sa.text(
                "INSERT INTO app_passwords (account_id, name, digest, created_at, last_used_ip)"
                " VALUES (1, 'p', 'd', :n, '')"
            ),
            {"n": now},
        )
    db.migrate(engine)  # every other branch, including ones that alter `accounts`
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM app_passwords")).scalar() == 1
        assert conn.execute(sa.text("SELECT count(*) FROM accounts")).scalar() == 1
    assert db.schema_revisions(engine) == db.head_revisions()
    engine.dispose()


def test_the_message_column_is_last_on_sqlite(runtime: Runtime) -> None:
    """gateway.db.insert_rows writes a large message through a zeroblob, which SQLite
    keeps unmaterialised only as a row's last column (migration 0014)."""
    if runtime.engine.dialect.name != "sqlite":
        return  # PostgreSQL keeps large values out of line: the order does not matter there
    with runtime.engine.connect() as conn:
        for table in ("mailbox_messages", "outbound_queue"):
            names = [row[1] for row in conn.exec_driver_sql(f"PRAGMA table_info({table})")]
            assert names[-1] == "raw", (table, names)


def test_large_message_columns_compress_with_lz4_on_postgresql(runtime: Runtime) -> None:
    """pglz compressed a whole encrypted message (its MIME headers compress, so it did
    not give up) for nothing, while the folder row was locked (migration 0015)."""
    if runtime.engine.dialect.name != "postgresql":
        pytest.skip("SQLite does not compress stored values")
    with runtime.engine.connect() as conn:
        found = dict(
            conn.execute(
                sa.text(
                    "SELECT attrelid::regclass::text || '.' || attname, attcompression"
                    " FROM pg_attribute WHERE (attrelid::regclass::text, attname) IN"
                    " (('mailbox_messages', 'raw'), ('mailbox_messages', 'search_text'),"
                    " ('outbound_queue', 'raw'),"
                    " ('secure_messages', 'ciphertext'))"
                )
            ).all()
        )
    assert found == {
        "mailbox_messages.raw": "l",
        "mailbox_messages.search_text": "l",
        "outbound_queue.raw": "l",
        "secure_messages.ciphertext": "l",
    }


def test_the_migrated_check_constraints_are_the_models(runtime: Runtime) -> None:
    """compare_metadata does not look at CHECK constraints: their names are compared
    here, and what the one on external-key sources allows is tried below."""
    expected = {
        (table.name, constraint.name)
        for metadata in (Base.metadata, KeystoreBase.metadata)
        for table in metadata.tables.values()
        for constraint in table.constraints
        if isinstance(constraint, sa.CheckConstraint) and constraint.name
    }
    inspector = sa.inspect(runtime.engine)
    found = {
        (table, check["name"])
        for table, _name in expected
        for check in inspector.get_check_constraints(table)
    }
    assert found == expected


def tombstone(source: str, revoked_at: dt.datetime | None) -> ExternalKey:
    now = dt.datetime.now(dt.UTC)
    return ExternalKey(
        address="carol@partner.example",
        fingerprint="A" * 40,
        subkey_id="",
        public_key=b"",
        source=source,
        fetched_at=now,
        last_checked=now,
        expires_at=None,
        revoked_at=revoked_at,
    )


def test_an_autocrypt_source_is_allowed_for_revoked_rows_only(runtime: Runtime) -> None:
    """Migration 0017: a key first seen revoked in an Autocrypt header leaves a revoked
    row; keys in use from Autocrypt are peer state, never rows of this table."""
    now = dt.datetime.now(dt.UTC)
    with db.transaction(runtime.sessions) as session:
        session.add(tombstone("autocrypt", now))
    for refused in (tombstone("autocrypt", None), tombstone("gossip", now)):
        with pytest.raises(sa.exc.IntegrityError), db.transaction(runtime.sessions) as session:
            session.add(refused)
