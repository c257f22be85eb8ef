"""A real IMAP program no one here wrote: isync's mbsync syncs every folder of an account
to a local Maildir and back, and what either side changes shows on the other: a flag
set locally is a read mark in the webmail, a message moved in the webmail moves locally,
a message written locally is uploaded into its folder."""

from __future__ import annotations

import os
import shutil
import subprocess
from email.parser import BytesHeaderParser
from pathlib import Path

import pytest
import trustme
from flask import Flask

from gateway.imap.server import ImapServer
from gateway.runtime import Runtime
from tests.gateway.imap.conftest import deliver, plain

from .webmail_support import ALICE, Webmail, rows

MBSYNC = shutil.which("mbsync")


def maildir_files(root: Path, folder: str) -> dict[str, Path]:
    """Subject line -> file, for every message in a local Maildir folder."""
    base = root / folder
    found: dict[str, Path] = {}
    for sub in ("cur", "new"):
        for path in (base / sub).glob("*") if (base / sub).is_dir() else []:
            headers = BytesHeaderParser().parsebytes(path.read_bytes())
            found[str(headers["Subject"])] = path
    return found


@pytest.fixture
def mbsync(
    tmp_path: Path, imap_server: ImapServer, mail_users: dict[str, str], tls_ca: trustme.CA
) -> tuple[Path, list[str]]:
    assert MBSYNC is not None, "mbsync (Debian package isync) is not installed"
    ca = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(ca))
    local = tmp_path / "Mail"
    local.mkdir()
    config = tmp_path / "mbsyncrc"
    config.write_text(
        f"""IMAPAccount sealgate
Host localhost
Port {imap_server.tls_port}
User {ALICE}
Pass {mail_users[ALICE]}
SSLType IMAPS
CertificateFile {ca}

IMAPStore remote
Account sealgate

MaildirStore local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel all
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
""",
        encoding="utf-8",
    )
    config.chmod(0o600)
    command = [MBSYNC, "--config", str(config), "--all"]
    return local, command


def sync(command: list[str]) -> None:
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=120, check=False, env=dict(os.environ)
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mbsync_syncs_every_folder_both_ways(
    mbsync: tuple[Path, list[str]], app: Flask, runtime: Runtime, mail_users: dict[str, str]
) -> None:
    local, command = mbsync
    deliver(runtime, ALICE, plain("Inbox one"))
    deliver(runtime, ALICE, plain("Inbox two"))
    deliver(runtime, ALICE, plain("Sent one"), folder="Sent")
    deliver(runtime, ALICE, plain("Project plan"), folder="Projects/Acme")
    sync(command)
    assert set(maildir_files(local, "INBOX")) == {"Inbox one", "Inbox two"}
    assert set(maildir_files(local, "Sent")) == {"Sent one"}
    assert set(maildir_files(local, "Projects/Acme")) == {"Project plan"}
    assert (local / "Drafts" / "cur").is_dir() and (local / "Trash" / "cur").is_dir()

    webmail = Webmail(app.test_client()).login(ALICE)
    assert 'class="unread"' in webmail.get("/inbox").text

    # A flag changed locally (read, flagged) shows in the webmail.
    path = maildir_files(local, "INBOX")["Inbox one"]
    base = path.name.split(":2,")[0]
    path.rename(local / "INBOX" / "cur" / f"{base}:2,FS")
    sync(command)
    [one] = [r for r in rows(runtime, ALICE) if r.subject == "Inbox one"]
    assert {"\\Seen", "\\Flagged"} <= set(one.flags.split())
    listing = webmail.get("/inbox").text
    row_of_one = listing[: listing.index("Inbox one")].rsplit("<tr", 1)[1]
    assert 'class="read"' in row_of_one

    # A message moved in the webmail moves locally.
    [two] = [r for r in rows(runtime, ALICE) if r.subject == "Inbox two"]
    moved = webmail.post(f"/mail/{two.id}/move", {"folder": "Trash"}, page=f"/mail/{two.id}")
    assert moved.status_code == 303
    sync(command)
    assert set(maildir_files(local, "INBOX")) == {"Inbox one"}
    assert set(maildir_files(local, "Trash")) == {"Inbox two"}

    # A message written locally is uploaded into its folder.
    (local / "Projects/Acme" / "new" / "1700000000.local.host").write_bytes(
        plain("Written offline")
    )
    sync(command)
    assert [r.subject for r in rows(runtime, ALICE, "Projects/Acme")] == [
        "Project plan",
        "Written offline",
    ]
