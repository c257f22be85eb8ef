"""mailbox search: recipients and the text of plain messages

Revision ID: 0008
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mailbox_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("to_addr", sa.Text(), server_default="", nullable=False))
        batch_op.add_column(sa.Column("search_text", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mailbox_messages", schema=None) as batch_op:
        batch_op.drop_column("search_text")
        batch_op.drop_column("to_addr")
