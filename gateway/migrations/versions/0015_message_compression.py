"""message compression: on PostgreSQL, large message columns are compressed with lz4

PostgreSQL compresses a large value before it stores it out of line (TOAST), with
pglz unless told otherwise. pglz gives up early on data that does not compress in
its first kilobyte, but an encrypted message starts with MIME headers, which do:
it then compresses the whole armored text, about 23 ms of the database's CPU per
1.4 MB copy while the folder row is locked, and saves nothing (bench: a 1 MiB
encrypted submission stored its two copies in 60 ms, 18 ms with lz4). lz4 does
the same for a fraction of the CPU and still shrinks plain text (the message and
its search text, each compressed on every 10 KiB plain message). Only values
written from now on are affected; nothing is rewritten. Where the server was built
without lz4 (it is optional before PostgreSQL 16 in source builds) the columns stay
as they are. SQLite stores values as given and needs nothing.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

COLUMNS = (
    ("mailbox_messages", "raw"),
    ("mailbox_messages", "search_text"),
    ("outbound_queue", "raw"),
    ("secure_messages", "ciphertext"),
)


def _lz4_available() -> bool:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    methods: list[str] | None = bind.execute(
        sa.text("SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'")
    ).scalar()
    return methods is not None and "lz4" in methods


def upgrade() -> None:
    if _lz4_available():
        for table, column in COLUMNS:
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION lz4")


def downgrade() -> None:
    if _lz4_available():
        for table, column in COLUMNS:
            op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION default")
