"""Helpers for the outage tests: take the database file or the ring away and back, and
read what the log said about it."""

from __future__ import annotations

import contextlib
import logging
import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import outages
from gateway.runtime import Runtime
from keystore.masterkey import ring_path


@pytest.fixture
def fresh_watch(monkeypatch: pytest.MonkeyPatch) -> outages.Watch:
    """This test's own outage watch: what an earlier test left is no outage of this one."""
    watch = outages.Watch()
    monkeypatch.setattr(outages, "WATCH", watch)
    return watch


@contextlib.contextmanager
def sqlite_file_unavailable(runtime: Runtime) -> Iterator[None]:
    """The SQLite file cannot be opened (a directory stands where it was) for every
    connection made from now on: the pool's open ones are closed, as after a restart."""
    path = Path(str(runtime.engine.url.database))
    aside = path.with_name(path.name + ".aside")
    runtime.engine.dispose()
    path.rename(aside)
    path.mkdir()
    try:
        yield
    finally:
        path.rmdir()
        aside.rename(path)


@contextlib.contextmanager
def ring_unavailable(runtime: Runtime) -> Iterator[None]:
    """The master key ring file is gone while the process runs."""
    path = ring_path(runtime.settings.data_dir)
    aside = path.with_name(path.name + ".aside")
    path.rename(aside)
    try:
        yield
    finally:
        aside.rename(path)


def outage_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "gateway.outages"]


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.exc_info or r.exc_text]


def first_refusal(client: smtplib.SMTP, sender: str, rcpt: str, raw: bytes) -> tuple[int, str]:
    """Send one message command by command; the first reply that is not a success (the
    command that met a problem), or DATA's final reply."""
    for command, arg in (("MAIL", f"FROM:<{sender}>"), ("RCPT", f"TO:<{rcpt}>")):
        code, text = client.docmd(command, arg)
        if code >= 400:
            client.rset()
            return code, text.decode()
    code, text = client.docmd("DATA")
    if code != 354:
        client.rset()
        return code, text.decode()
    client.send(raw.replace(b"\n.", b"\n..") + b"\r\n.\r\n")
    code, text = client.getreply()
    return code, text.decode()


def capture(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
