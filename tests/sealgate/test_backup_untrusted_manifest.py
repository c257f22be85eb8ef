"""`sealgate restore` of a backup whose manifest is damaged or edited.

Threat: an admin restoring such a backup gets a traceback instead of the reason.
It must be refused before anything changes, naming the problem.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway import db
from gateway.runtime import Runtime
from tests.keystore.conftest import run_sealgate

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
