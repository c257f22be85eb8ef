"""`sealgate restore` of a backup that is damaged, edited, or from a newer release.

Threat: an admin restoring such a backup gets a traceback instead of the reason, or,
worse, a live database replaced by one this release cannot run (a backup from a
newer release was loaded before its schema was looked at, and the migration then
failed). Each must be refused before anything changes, naming the problem.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import smtplib
import sqlite3
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from gateway import db, runlock
from gateway.models import MailboxMessage
from gateway.runtime import Runtime
from tests.conftest import TEST_DATABASE_URL
from tests.keystore.conftest import run_sealgate
from tests.sealgate.test_serve import refused_start, running

Edit = Callable[[dict[str, Any]], object]


def _drop_database_file(manifest: dict[str, Any]) -> None:
    for name in ("sealgate.db", "database.pgdump"):
        manifest["files"].pop(name, None)


def _file_entry_as_text(manifest: dict[str, Any]) -> None:
    name = next(iter(manifest["files"]))
    manifest["files"][name] = "0" * 64


EDITS: dict[str, tuple[Edit, str]] = {
    "not an object": (lambda m: [m], "malformed manifest (not a JSON object)"),
    "file entry is text": (_file_entry_as_text, "has no sha256 and size"),
    "no database file": (_drop_database_file, "lists 0 database files"),
    "versions as text": (
        lambda m: m.update(master_key_versions=["1"]),
        "master_key_versions is not a list of numbers",
    ),
    "revisions not a list": (
        lambda m: m.update(schema_revisions="0017"),
        "schema_revisions is not a list of strings",
    ),
}


def live_revisions(runtime: Runtime) -> frozenset[str]:
    runtime.engine.dispose()
    return db.schema_revisions(runtime.engine)


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_an_edited_manifest_is_refused_by_name_without_a_traceback(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str], tmp_path: Path,
    edit: str,
) -> None:  # fmt: skip
    target = tmp_path / "backup"
    assert run_sealgate(test_env, "backup", str(target)).returncode == 0
    path = target / "manifest.json"
    manifest = json.loads(path.read_text())
    change, expected = EDITS[edit]
    replaced = change(manifest)
    path.write_text(json.dumps(replaced if replaced is not None else manifest))

    refused = run_sealgate(test_env, "restore", "--force", str(target))
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    [line] = [x for x in refused.stderr.splitlines() if x.startswith("Error:")]
    assert expected in line
    assert live_revisions(runtime) == db.head_revisions()


def test_a_backup_from_a_newer_release_is_refused_before_anything_changes(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str], tmp_path: Path
) -> None:
    """The backup's copy is read, not only its manifest: both say the newer schema."""
    heads = db.head_revisions()
    future = "9999_from_a_newer_release"

    def set_revision(revision: str) -> None:
        with runtime.engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
        runtime.engine.dispose()

    set_revision(future)
    target = tmp_path / "backup"
    try:
        made = run_sealgate(test_env, "backup", str(target))
    finally:
        set_revision(sorted(heads)[0])
    assert made.returncode == 0, made.stderr
    assert json.loads((target / "manifest.json").read_text())["schema_revisions"] == [future]

    refused = run_sealgate(test_env, "restore", "--force", str(target))
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    assert f"schema revision {future}" in refused.stderr
    assert "newer release" in refused.stderr and "nothing was changed" in refused.stderr
    assert live_revisions(runtime) == heads

    # The manifest edited to say a known revision (and its checksums kept right):
    # the copy's own revision still stops it.
    path = target / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["schema_revisions"] = sorted(heads)
    path.write_text(json.dumps(manifest))
    refused = run_sealgate(test_env, "restore", "--force", str(target))
    assert refused.returncode == 1 and f"schema revision {future}" in refused.stderr
    assert live_revisions(runtime) == heads
    dump = next(p for p in target.iterdir() if p.name in ("sealgate.db", "database.pgdump"))
    assert manifest["files"][dump.name]["sha256"] == hashlib.sha256(dump.read_bytes()).hexdigest()


def test_a_database_copy_that_is_no_sealgate_database_is_refused(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str], tmp_path: Path
) -> None:
    """A copy with the right checksum in its manifest but no sealgate schema in it (a
    wrong file, a partial dump): restore --force loaded it and then migrated it into an
    empty installation in place of the live one, and said it restored the manifest's
    counts."""
    target = tmp_path / "backup"
    assert run_sealgate(test_env, "backup", str(target)).returncode == 0
    dump = next(p for p in target.iterdir() if p.name in ("sealgate.db", "database.pgdump"))
    dump.unlink()
    if TEST_DATABASE_URL:  # only one table of the live database: no alembic_version
        url = sa.engine.make_url(TEST_DATABASE_URL).set(drivername="postgresql")
        subprocess.run(
            ["pg_dump", "--format=custom", "--table=domains", "--file", str(dump),
             url.render_as_string(hide_password=False)],
            check=True,
        )  # fmt: skip
    else:
        with contextlib.closing(sqlite3.connect(dump)) as conn:
            conn.execute("CREATE TABLE notes (text TEXT)")
            conn.commit()
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["files"][dump.name] = {
        "sha256": hashlib.sha256(dump.read_bytes()).hexdigest(),
        "size": dump.stat().st_size,
    }
    (target / "manifest.json").write_text(json.dumps(manifest))

    refused = run_sealgate(test_env, "restore", "--force", str(target))
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert f"{dump.name} in the backup holds no sealgate database" in refused.stderr
    assert "nothing was changed" in refused.stderr
    listed = run_sealgate(test_env, "user", "list")
    assert "alice@example.test" in listed.stdout, listed.stderr


def test_a_restore_under_a_running_serve_is_refused_and_no_mail_is_lost(
    runtime: Runtime,
    mail_users: dict[str, str],
    test_env: dict[str, str],
    tmp_path: Path,
    client_ssl_context: ssl.SSLContext,
) -> None:
    """Threat: the admin forgets to stop serve. restore --force replaced the SQLite file
    under it; serve went on writing into the unlinked file, and every message it
    answered 250 afterwards was gone once it stopped (DESIGN: after a 250, nothing is
    lost). Restore must refuse while serve runs, and serve must not start while a
    restore runs."""
    target = tmp_path / "backup"
    assert run_sealgate(test_env, "backup", str(target)).returncode == 0
    with running(test_env) as server:
        refused = run_sealgate(test_env, "restore", "--force", str(target))
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        assert "sealgate serve is running on" in refused.stderr
        assert "nothing was changed" in refused.stderr
        raw = b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: after\r\n\r\nhi\r\n"
        with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=60) as client:
            client.starttls(context=client_ssl_context)
            client.login("alice@example.test", mail_users["alice@example.test"])
            assert client.sendmail("alice@example.test", ["bob@example.test"], raw) == {}
        server.proc.send_signal(signal.SIGTERM)
        assert server.wait_and_close() == 0
    runtime.engine.dispose()
    with db.read_only(runtime.sessions) as session:
        subjects = list(session.scalars(sa.select(MailboxMessage.subject)))
    assert "after" in subjects

    # And the other way: serve does not start while a restore holds the data dir.
    with runlock.exclusive(Path(test_env["SEALGATE_DATA_DIR"])):
        done = refused_start(test_env)
    assert "a restore or `sealgate init` is running on" in done.stderr
