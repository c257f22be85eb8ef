"""secure link close: a per-link grant generation, bumped when the recipient closes

A recipient's access to an opened secure page lives in the signed session cookie
(a grant), which the server cannot call back: a copy saved before "Close" (a shared
computer, a browser restoring its session) opened the message again until the grant
ran out. Grants are now bound to this counter as well as to the message's seal
generation; Close bumps it, which voids every earlier grant of the link. Existing
links start at 0 (grants issued before the upgrade are void anyway: their binding
had no such counter).

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("secure_links", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("grant_generation", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("secure_links", schema=None) as batch_op:
        batch_op.drop_column("grant_generation")
