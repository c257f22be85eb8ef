"""served message sizes: RFC822.SIZE counts the CRLF line ends IMAP now serves

IMAP serves every stored message with CRLF line ends only
(gateway.mail.served_line_ends): a bare CR or LF in the body, and in the header
of messages stored before intake repaired headers, becomes a CRLF (a bare CR in the
header a space). The size a message is listed with (RFC822.SIZE, read before the
message is loaded) must be that of the served bytes, so it is recomputed for every
stored message; only the few with odd line ends change. Messages are read a batch
at a time, in id order, so a large mailbox table is never held in memory at once.
Downgrading keeps the sizes (the older code serves the stored bytes and its sizes
were then off by the line ends it served, as they always had been).

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from gateway.mail.served_line_ends import served_size

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

BATCH = 200

messages = sa.table(
    "mailbox_messages",
    sa.column("id", sa.Integer),
    sa.column("size", sa.Integer),
    sa.column("raw", sa.LargeBinary),
)


def upgrade() -> None:
    conn = op.get_bind()
    last = 0
    while True:
        rows = conn.execute(
            sa.select(messages.c.id, messages.c.size, messages.c.raw)
            .where(messages.c.id > last)
            .order_by(messages.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        for row_id, size, raw in rows:
            served = served_size(bytes(raw))
            if served != size:
                conn.execute(
                    sa.update(messages).where(messages.c.id == row_id).values(size=served)
                )
        last = rows[-1][0]


def downgrade() -> None:
    pass
