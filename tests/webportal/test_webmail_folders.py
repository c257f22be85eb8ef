"""Folders the user makes, in the webmail: create, list, move into, rename, delete; the
same folders an IMAP program sees (one table), and nobody else's."""

from __future__ import annotations

import re

import pytest
from flask import Flask

from gateway import accounts, db
from gateway.imap import store
from gateway.imap.folders import MAX_FOLDERS
from gateway.runtime import Runtime
from tests.gateway.imap.conftest import deliver, plain
from tests.gateway.imap.test_hostile_clients import fill_folders

from .webmail_support import ALICE, BOB, Webmail, rows

FOLDER_LINK = re.compile(r'href="/folders/(\d+)"')


@pytest.fixture
def alice(app: Flask, mail_users: dict[str, str]) -> Webmail:
    return Webmail(app.test_client()).login(ALICE)


def account_of(runtime: Runtime, address: str) -> int:
    with db.read_only(runtime.sessions) as session:
        row = accounts.find_address(session, address)
        assert row is not None
        return row.account_id


def test_create_move_rename_delete(alice: Webmail, runtime: Runtime) -> None:
    deliver(runtime, ALICE, plain("Keep this"))
    created = alice.post("/folders", {"name": "Receipts/2026"}, page="/inbox")
    assert created.status_code == 303
    [folder_id] = {int(i) for i in FOLDER_LINK.findall(alice.get("/inbox").text)}
    with db.read_only(runtime.sessions) as session:
        names = [f.name for f in store.list_folders(session, account_of(runtime, ALICE))]
    assert "Receipts/2026" in names  # what an IMAP program lists

    [message] = rows(runtime, ALICE)
    page = alice.get(f"/mail/{message.id}").text
    assert '<option value="Receipts/2026">' in page
    moved = alice.post(
        f"/mail/{message.id}/move", {"folder": "Receipts/2026"}, page=f"/mail/{message.id}"
    )
    assert moved.status_code == 303
    assert "Keep this" in alice.get(f"/folders/{folder_id}").text

    renamed = alice.post(
        f"/folders/{folder_id}/rename", {"name": "Receipts/Old"}, page=f"/folders/{folder_id}"
    )
    assert renamed.status_code == 303
    assert [r.subject for r in rows(runtime, ALICE, "Receipts/Old")] == ["Keep this"]
    refused = alice.post(
        f"/folders/{folder_id}/rename", {"name": "Trash"}, page=f"/folders/{folder_id}"
    )
    assert refused.status_code == 303
    assert "cannot be used" in alice.get(f"/folders/{folder_id}").text

    deleted = alice.post(f"/folders/{folder_id}/delete", {}, page=f"/folders/{folder_id}")
    assert deleted.status_code == 303
    assert rows(runtime, ALICE, "Receipts/Old") == []
    assert alice.get(f"/folders/{folder_id}").status_code == 404


def test_someone_elses_folder_is_not_found(
    alice: Webmail, app: Flask, runtime: Runtime, mail_users: dict[str, str]
) -> None:
    bob = Webmail(app.test_client()).login(BOB)
    bob.post("/folders", {"name": "Private"}, page="/inbox")
    [bobs] = {int(i) for i in FOLDER_LINK.findall(bob.get("/inbox").text)}
    assert alice.get(f"/folders/{bobs}").status_code == 404
    assert alice.post(f"/folders/{bobs}/delete", {}, page="/inbox").status_code == 404
    assert FOLDER_LINK.findall(alice.get("/inbox").text) == []


def test_a_folder_past_the_limit_is_refused_with_the_reason(
    alice: Webmail, runtime: Runtime
) -> None:
    """The webmail shares the folders, and their limit, with IMAP
    (tests/gateway/imap/test_hostile_clients.py): past it, the page says why."""
    fill_folders(runtime, ALICE, room=0)
    refused = alice.post("/folders", {"name": "One more"}, page="/inbox")
    assert refused.status_code == 303
    page = alice.get("/inbox").text
    assert f"at most {MAX_FOLDERS}" in page
    with db.read_only(runtime.sessions) as session:
        names = [f.name for f in store.list_folders(session, account_of(runtime, ALICE))]
    assert "One more" not in names


def test_white_space_around_a_typed_folder_name_is_trimmed(
    alice: Webmail, runtime: Runtime
) -> None:
    """IMAP refuses a name with white space around it (tests/gateway/imap/
    test_hostile_clients.py); the webmail trims what its user typed instead."""
    created = alice.post("/folders", {"name": "  Projects \t"}, page="/inbox")
    assert created.status_code == 303
    with db.read_only(runtime.sessions) as session:
        (folder,) = [
            f
            for f in store.list_folders(session, account_of(runtime, ALICE))
            if "Projects" in f.name
        ]
    assert folder.name == "Projects"
    renamed = alice.post(
        f"/folders/{folder.id}/rename", {"name": " Plans "}, page=f"/folders/{folder.id}"
    )
    assert renamed.status_code == 303
    with db.read_only(runtime.sessions) as session:
        names = [f.name for f in store.list_folders(session, account_of(runtime, ALICE))]
    assert "Plans" in names and "Projects" not in names
