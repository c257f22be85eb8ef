"""signed list fields: the message list shows the header fields a signature covers

The webmail's message page shows the header fields a message's signature covers
(RFC 9788 header protection) and warns when it arrived under other outer fields (a
signed part passed on by someone else); the list and search showed the outer
Subject, From and To of the same message. The list columns are now set from the
signed fields when the owner's reading verifies them, and `signed_fields` says so
("signed", or "differ" for a message that arrived otherwise, which the list marks).
Existing rows start at "" (not verified): only a reader decrypts, so there is
nothing to backfill; each is set when it is next opened.

On SQLite the table is rebuilt so that `raw` stays its last column (migration 0014).

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

COLUMNS = (
    "id", "address_id", "folder", "flags", "queue_id", "subject", "from_addr",
    "envelope_from", "date", "received_at", "size", "encrypted", "folder_id", "uid",
    "message_id", "envelope", "to_addr", "search_text",
)  # fmt: skip


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table(
        "mailbox_messages",
        recreate="always" if sqlite else "auto",
        partial_reordering=[(*COLUMNS, "signed_fields", "raw")] if sqlite else None,
    ) as batch_op:
        batch_op.add_column(
            sa.Column("signed_fields", sa.String(length=16), server_default="", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("mailbox_messages") as batch_op:
        batch_op.drop_column("signed_fields")
