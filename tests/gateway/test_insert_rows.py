"""gateway.db.insert_rows: large messages go into rows whole, in the caller's transaction.

On SQLite a row with a message of LARGE_BLOB bytes or more is written through a
zeroblob and incremental blob I/O; on PostgreSQL in the one INSERT. Either way the
bytes read back are the bytes written, next to small rows of the same call, and a
rolled-back savepoint takes the large row with it.
"""

from __future__ import annotations

import os
from typing import cast

import pytest
import sqlalchemy as sa

from gateway import db
from gateway.models import QueueItem
from gateway.runtime import Runtime
from gateway.timeutil import utcnow

QUEUE = cast(sa.Table, QueueItem.__table__)


def row(raw: bytes, rcpt: str) -> dict[str, object]:
    now = utcnow()
    return {
        "queue_id": "Q" + rcpt[:8],
        "mail_from": "a@example.test",
        "rcpt_to": rcpt,
        "raw": raw,
        "sealed": False,
        "status": "held",
        "attempts": 0,
        "created_at": now,
        "next_attempt_at": now,
    }


def stored(runtime: Runtime) -> dict[str, bytes]:
    with runtime.engine.connect() as conn:
        return dict(conn.execute(sa.select(QueueItem.rcpt_to, QueueItem.raw)).all())


@pytest.mark.parametrize("size", [db.LARGE_BLOB - 1, db.LARGE_BLOB, 3 * 1024 * 1024 + 7])
def test_rows_of_any_size_read_back_whole(runtime: Runtime, size: int) -> None:
    big, small = os.urandom(size), b"small message\r\n"
    with db.transaction(runtime.sessions) as session:
        db.insert_rows(
            session.connection(), QUEUE, [row(big, "big@x.test"), row(small, "small@x.test")]
        )
    assert stored(runtime) == {"big@x.test": big, "small@x.test": small}


def test_a_rolled_back_savepoint_takes_the_large_row_with_it(runtime: Runtime) -> None:
    kept, dropped = os.urandom(db.LARGE_BLOB + 1), os.urandom(db.LARGE_BLOB + 2)
    with db.transaction(runtime.sessions) as session:
        db.insert_rows(session.connection(), QUEUE, [row(kept, "kept@x.test")])
        with pytest.raises(RuntimeError), session.begin_nested():
            db.insert_rows(session.connection(), QUEUE, [row(dropped, "dropped@x.test")])
            raise RuntimeError("this message failed")
    assert stored(runtime) == {"kept@x.test": kept}
