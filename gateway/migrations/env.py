"""Alembic environment: one schema made of the gateway's and the keystore's tables."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from gateway.models import Base
from keystore.models import KeystoreBase

config = context.config
target_metadata = [Base.metadata, KeystoreBase.metadata]


def run_migrations() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        engine = sa.create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations()
