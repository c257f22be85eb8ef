"""outbound queue: rows sealed at rest under the master key (secure-page notifications)

Revision ID: 0009
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbound_queue", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("sealed", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("outbound_queue", schema=None) as batch_op:
        batch_op.drop_column("sealed")
