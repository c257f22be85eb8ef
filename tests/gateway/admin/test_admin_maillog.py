"""The mail log keeps `[admin] mail_log_days` of entries; `serve`'s periodic job purges the rest."""

from __future__ import annotations

import asyncio
import datetime as dt

import sqlalchemy as sa

from gateway import db
from gateway.admin import maillog
from gateway.models import MailLogEntry
from gateway.runtime import Runtime


def entry(recipient: str, at: dt.datetime) -> MailLogEntry:
    return MailLogEntry(
        queue_id="Q" + recipient[:5],
        message_id="",
        sender="alice@example.test",
        recipient=recipient,
        handling="pgp",
        status=maillog.SENT,
        last_reply="250 2.0.0 Ok",
        created_at=at,
        updated_at=at,
    )


def test_the_periodic_job_purges_entries_older_than_the_retention(runtime: Runtime) -> None:
    now = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
    assert runtime.settings.admin.mail_log_days == 20
    with db.transaction(runtime.sessions) as session:
        session.add(entry("old@x.test", now - dt.timedelta(days=20, seconds=1)))
        session.add(entry("kept@x.test", now - dt.timedelta(days=19, hours=23)))

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(maillog.run_purge(runtime, stop, clock=lambda: now))
        for _ in range(200):
            with db.read_only(runtime.sessions) as session:
                if session.scalar(sa.select(sa.func.count()).select_from(MailLogEntry)) == 1:
                    break
            await asyncio.sleep(0.02)
        stop.set()
        await task

    asyncio.run(scenario())
    with db.read_only(runtime.sessions) as session:
        assert list(session.scalars(sa.select(MailLogEntry.recipient))) == ["kept@x.test"]


def test_message_id_is_read_from_the_header_block_only() -> None:
    raw = b"Subject: x\r\nMessage-ID: <a@b>\r\n\r\nMessage-ID: <body@b>\r\n"
    assert maillog.message_id_of(raw) == "<a@b>"
    assert maillog.message_id_of(b"Subject: x\r\n\r\nMessage-ID: <body@b>\r\n") == ""
    assert (
        maillog.message_id_of(b"message-id:  <\x01evil\r\n") == "< evil"
    )  # control characters never reach the log
