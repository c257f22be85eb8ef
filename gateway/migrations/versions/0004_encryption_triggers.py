"""encryption triggers: the account's "always encrypt" setting and admin domain rules

Revision ID: 0004
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import gateway.timeutil

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("always_encrypt", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    op.create_table(
        "encryption_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("created_at", gateway.timeutil.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_encryption_rules")),
        sa.UniqueConstraint("domain", name=op.f("uq_encryption_rules_domain")),
    )


def downgrade() -> None:
    op.drop_table("encryption_rules")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("always_encrypt")
