"""The Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from gateway import db
from gateway.models import Base
from gateway.runtime import Runtime
from keystore.models import KeystoreBase


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
