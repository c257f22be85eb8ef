"""message column last: on SQLite, `raw` moves to the end of the mailbox and queue rows

SQLite writes a large message into a row without holding it twice more in memory
(the bound value and the record built from it) only when the row is inserted with
a zeroblob that is then filled through incremental blob I/O, and a zeroblob stays
unmaterialised only as the record's last column (gateway.db.insert_rows). The
tables are rebuilt once, rows kept; PostgreSQL stores large values out of line
(TOAST) and needs nothing.

Revision ID: 0014
Revises: 0003, 0004, 0006, 0007, 0008, 0013
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = ("0003", "0004", "0006", "0007", "0008", "0013")  # a merge: every column exists
branch_labels = None
depends_on = None

MAILBOX = (
    "id", "address_id", "folder", "flags", "queue_id", "subject", "from_addr",
    "envelope_from", "date", "received_at", "size", "encrypted", "folder_id", "uid",
    "message_id", "envelope", "to_addr", "search_text",
)  # fmt: skip
QUEUE = (
    "id", "queue_id", "mail_from", "rcpt_to", "status", "attempts", "created_at",
    "next_attempt_at", "leased_until", "last_error", "sealed",
)  # fmt: skip


def upgrade() -> None:
    _order({"mailbox_messages": (*MAILBOX, "raw"), "outbound_queue": (*QUEUE, "raw")})


def downgrade() -> None:
    _order(
        {
            "mailbox_messages": (*MAILBOX[:12], "raw", *MAILBOX[12:]),
            "outbound_queue": (*QUEUE[:4], "raw", *QUEUE[4:]),
        }
    )


def _order(tables: dict[str, tuple[str, ...]]) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table, columns in tables.items():
        with op.batch_alter_table(table, recreate="always", partial_reordering=[columns]):
            pass
