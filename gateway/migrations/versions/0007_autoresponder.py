"""autoresponder: saved away messages per address, and who was answered when

Revision ID: 0007
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import gateway.timeutil

revision = "0007"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "autoresponders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("starts_at", gateway.timeutil.UTCDateTime(), nullable=True),
        sa.Column("ends_at", gateway.timeutil.UTCDateTime(), nullable=True),
        sa.Column("weekdays", sa.Integer(), nullable=False),
        sa.Column("reply_from_id", sa.Integer(), nullable=True),
        sa.Column("excluded", sa.Text(), nullable=False),
        sa.Column("created_at", gateway.timeutil.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["address_id"], ["addresses.id"],
            name=op.f("fk_autoresponders_address_id_addresses"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["reply_from_id"], ["addresses.id"],
            name=op.f("fk_autoresponders_reply_from_id_addresses"), ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_autoresponders")),
    )
    with op.batch_alter_table("autoresponders", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_autoresponders_address_id"), ["address_id"], unique=False
        )
        batch_op.create_index(
            "uq_autoresponders_one_active",
            ["address_id"],
            unique=True,
            sqlite_where=sa.text("active"),
            postgresql_where=sa.text("active"),
        )
    op.create_table(
        "autoreplies_sent",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address_id", sa.Integer(), nullable=False),
        sa.Column("sender", sa.String(length=320), nullable=False),
        sa.Column("sent_at", gateway.timeutil.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["address_id"], ["addresses.id"],
            name=op.f("fk_autoreplies_sent_address_id_addresses"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_autoreplies_sent")),
        sa.UniqueConstraint("address_id", "sender", name=op.f("uq_autoreplies_sent_address_id")),
    )


def downgrade() -> None:
    op.drop_table("autoreplies_sent")
    op.drop_table("autoresponders")
