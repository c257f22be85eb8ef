"""secure page: sealed messages for recipients without a key, and their links

Revision ID: 0005
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import gateway.timeutil

revision = "0005"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "secure_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("queue_id", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("sender_address", sa.String(length=320), nullable=False),
        sa.Column("created_at", gateway.timeutil.UTCDateTime(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("kdf_salt", sa.LargeBinary(), nullable=False),
        sa.Column("kdf_time_cost", sa.Integer(), nullable=False),
        sa.Column("kdf_memory_cost", sa.Integer(), nullable=False),
        sa.Column("kdf_parallelism", sa.Integer(), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("purged_at", gateway.timeutil.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_secure_messages_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_secure_messages")),
        sa.UniqueConstraint("public_id", name=op.f("uq_secure_messages_public_id")),
    )
    with op.batch_alter_table("secure_messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_secure_messages_account_id"), ["account_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_secure_messages_queue_id"), ["queue_id"], unique=False)

    op.create_table(
        "secure_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("token_digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", gateway.timeutil.UTCDateTime(), nullable=False),
        sa.Column("expires_at", gateway.timeutil.UTCDateTime(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_at", gateway.timeutil.UTCDateTime(), nullable=True),
        sa.Column("revoked_at", gateway.timeutil.UTCDateTime(), nullable=True),
        sa.Column("first_opened_at", gateway.timeutil.UTCDateTime(), nullable=True),
        sa.Column("last_opened_at", gateway.timeutil.UTCDateTime(), nullable=True),
        sa.Column("open_count", sa.Integer(), nullable=False),
        sa.Column("reply_count", sa.Integer(), nullable=False),
        sa.Column("last_reply_at", gateway.timeutil.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["secure_messages.id"],
            name=op.f("fk_secure_links_message_id_secure_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_secure_links")),
        sa.UniqueConstraint("token_digest", name=op.f("uq_secure_links_token_digest")),
    )
    with op.batch_alter_table("secure_links", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_secure_links_expires_at"), ["expires_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_secure_links_message_id"), ["message_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("secure_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_secure_links_message_id"))
        batch_op.drop_index(batch_op.f("ix_secure_links_expires_at"))
    op.drop_table("secure_links")
    with op.batch_alter_table("secure_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_secure_messages_queue_id"))
        batch_op.drop_index(batch_op.f("ix_secure_messages_account_id"))
    op.drop_table("secure_messages")
