"""keystore: Autocrypt peer state of external addresses

Addresses without a key get theirs right after the upgrade, in `sealgate init`
(and at `serve` start), not here: making a key needs the master-key ring, which
lives outside the database and is not known to a migration.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from keystore.models import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "keystore_autocrypt_peers",
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("last_seen", UTCDateTime(), nullable=False),
        sa.Column("autocrypt_timestamp", UTCDateTime(), nullable=True),
        sa.Column("fingerprint", sa.String(length=40), nullable=True),
        sa.Column("public_key", sa.LargeBinary(), nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("prefer_encrypt", sa.String(length=16), nullable=False),
        sa.CheckConstraint(
            "prefer_encrypt IN ('mutual', 'nopreference')",
            name=op.f("ck_keystore_autocrypt_peers_prefer_encrypt_known"),
        ),
        sa.PrimaryKeyConstraint("address", name=op.f("pk_keystore_autocrypt_peers")),
    )
    op.create_index(
        op.f("ix_keystore_autocrypt_peers_fingerprint"),
        "keystore_autocrypt_peers",
        ["fingerprint"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_keystore_autocrypt_peers_fingerprint"), table_name="keystore_autocrypt_peers"
    )
    op.drop_table("keystore_autocrypt_peers")
