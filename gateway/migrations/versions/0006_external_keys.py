"""external keys: vetted public keys of addresses hosted elsewhere, and WKD misses

Revision ID: 0006
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import keystore.models

revision = "0006"
down_revision = "0002"
branch_labels = None
depends_on = None

NOT_REVOKED = sa.text("revoked_at IS NULL")


def upgrade() -> None:
    op.create_table(
        "keystore_external_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("fingerprint", sa.String(length=40), nullable=False),
        sa.Column("subkey_id", sa.String(length=16), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("fetched_at", keystore.models.UTCDateTime(), nullable=False),
        sa.Column("last_checked", keystore.models.UTCDateTime(), nullable=False),
        sa.Column("expires_at", keystore.models.UTCDateTime(), nullable=True),
        sa.Column("revoked_at", keystore.models.UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "source IN ('import', 'wkd')",
            name=op.f("ck_keystore_external_keys_source_known"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_keystore_external_keys")),
    )
    op.create_index(
        op.f("ix_keystore_external_keys_address"), "keystore_external_keys", ["address"]
    )
    op.create_index(
        op.f("ix_keystore_external_keys_fingerprint"), "keystore_external_keys", ["fingerprint"]
    )
    # One key in use per address and source, kept by the database itself.
    op.create_index(
        "uq_keystore_external_keys_current",
        "keystore_external_keys",
        ["address", "source"],
        unique=True,
        sqlite_where=NOT_REVOKED,
        postgresql_where=NOT_REVOKED,
    )

    op.create_table(
        "keystore_wkd_misses",
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("failed_at", keystore.models.UTCDateTime(), nullable=False),
        sa.Column("retry_after", keystore.models.UTCDateTime(), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("address", name=op.f("pk_keystore_wkd_misses")),
    )


def downgrade() -> None:
    op.drop_table("keystore_wkd_misses")
    op.drop_index(
        "uq_keystore_external_keys_current",
        table_name="keystore_external_keys",
        sqlite_where=NOT_REVOKED,
        postgresql_where=NOT_REVOKED,
    )
    op.drop_index(
        op.f("ix_keystore_external_keys_fingerprint"), table_name="keystore_external_keys"
    )
    op.drop_index(op.f("ix_keystore_external_keys_address"), table_name="keystore_external_keys")
    op.drop_table("keystore_external_keys")
