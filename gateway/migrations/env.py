"""Alembic environment: one schema made of the gateway's and the keystore's tables."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from gateway.models import Base
from keystore.models import KeystoreBase

config = context.config
target_metadata = [Base.metadata, KeystoreBase.metadata]


def _driver_pragma(connection: sa.Connection, pragma: str) -> None:
    driver = connection.connection.driver_connection
    assert driver is not None
    driver.execute(pragma)


def run_migrations() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        engine = sa.create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # Batch mode rebuilds a table (copy, drop, rename). With foreign keys
            # enforced, dropping the old table would cascade to, null out, or be
            # refused by every row that refers to it. The pragma only takes effect
            # outside a transaction, so it goes to the driver connection directly.
            _driver_pragma(connection, "PRAGMA foreign_keys=OFF")
        try:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=sqlite,
            )
            with context.begin_transaction():
                context.run_migrations()
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"migration left {len(broken)} broken foreign keys")
            connection.commit()
        finally:
            if sqlite:
                _driver_pragma(connection, "PRAGMA foreign_keys=ON")


run_migrations()
