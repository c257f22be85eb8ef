"""keystore: address keys and master-key versions

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 01:55:59.727907
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import keystore.models

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ACTIVE_ONLY = sa.text("status = 'active'")


def upgrade() -> None:
    op.create_table(
        "keystore_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("wkd_hash", sa.String(length=32), nullable=False),
        sa.Column("fingerprint", sa.String(length=40), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("subkey_id", sa.String(length=16), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("wrapped_secret", sa.LargeBinary(), nullable=False),
        sa.Column("master_version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", keystore.models.UTCDateTime(), nullable=False),
        sa.Column("status_changed_at", keystore.models.UTCDateTime(), nullable=True),
        sa.Column("revocation_reason", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "status IN ('active', 'retired', 'revoked')",
            name=op.f("ck_keystore_keys_status_known"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_keystore_keys")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_keystore_keys_fingerprint")),
    )
    op.create_index(op.f("ix_keystore_keys_address"), "keystore_keys", ["address"])
    op.create_index(op.f("ix_keystore_keys_key_id"), "keystore_keys", ["key_id"])
    op.create_index(op.f("ix_keystore_keys_master_version"), "keystore_keys", ["master_version"])
    op.create_index(op.f("ix_keystore_keys_subkey_id"), "keystore_keys", ["subkey_id"])
    op.create_index(op.f("ix_keystore_keys_wkd_hash"), "keystore_keys", ["wkd_hash"])
    # One current key per address, kept by the database itself.
    op.create_index(
        "uq_keystore_keys_current_address",
        "keystore_keys",
        ["address"],
        unique=True,
        sqlite_where=ACTIVE_ONLY,
        postgresql_where=ACTIVE_ONLY,
    )

    op.create_table(
        "keystore_master_versions",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("first_seen_at", keystore.models.UTCDateTime(), nullable=False),
        sa.Column("retired_at", keystore.models.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_keystore_master_versions")),
    )


def downgrade() -> None:
    op.drop_table("keystore_master_versions")
    op.drop_index(
        "uq_keystore_keys_current_address",
        table_name="keystore_keys",
        sqlite_where=ACTIVE_ONLY,
        postgresql_where=ACTIVE_ONLY,
    )
    op.drop_index(op.f("ix_keystore_keys_wkd_hash"), table_name="keystore_keys")
    op.drop_index(op.f("ix_keystore_keys_subkey_id"), table_name="keystore_keys")
    op.drop_index(op.f("ix_keystore_keys_master_version"), table_name="keystore_keys")
    op.drop_index(op.f("ix_keystore_keys_key_id"), table_name="keystore_keys")
    op.drop_index(op.f("ix_keystore_keys_address"), table_name="keystore_keys")
    op.drop_table("keystore_keys")
