"""The manifest of a backup directory: what is in it and the checksum of each file."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
FORMAT = 1
CHUNK = 1024 * 1024


class BackupError(RuntimeError):
    """A backup cannot be made or restored; the text names the problem and is safe to show."""


@dataclass(frozen=True)
class Manifest:
    created_at: str
    sealgate_version: str
    database: str  # "sqlite" or "postgresql"
    schema_revisions: list[str]
    master_key_versions: list[int]  # versions the data is wrapped under
    files: dict[str, dict[str, Any]]  # name -> {"sha256": ..., "size": ...}
    counts: dict[str, int] = field(default_factory=dict)
    format: int = FORMAT


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def describe(directory: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    return {
        name: {"sha256": sha256_of(directory / name), "size": (directory / name).stat().st_size}
        for name in names
    }


def write(directory: Path, manifest: Manifest) -> None:
    (directory / MANIFEST).write_text(json.dumps(asdict(manifest), indent=2) + "\n")


def read(directory: Path) -> Manifest:
    path = directory / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupError(f"{directory} is not a sealgate backup (no {MANIFEST})") from None
    except (ValueError, UnicodeDecodeError):
        raise BackupError(f"{path} is not valid JSON") from None
    if not isinstance(data, dict):
        raise BackupError(f"{path}: malformed manifest (not a JSON object)")
    if data.get("format") != FORMAT:
        raise BackupError(f"{path}: unknown backup format {data.get('format')!r}")
    try:
        manifest = Manifest(**data)
    except TypeError:
        raise BackupError(f"{path}: malformed manifest") from None
    problem = _malformed(manifest)
    if problem:
        raise BackupError(f"{path}: malformed manifest ({problem})")
    return manifest


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _malformed(manifest: Manifest) -> str:
    """What in a parsed manifest has the wrong shape ("" if nothing).

    The manifest is read before anything else, from a directory that may have been
    damaged or edited: a wrong type must be a clear refusal, not a traceback later.
    """
    for name in ("created_at", "sealgate_version", "database"):
        if not isinstance(getattr(manifest, name), str):
            return f"{name} is not a string"
    if not isinstance(manifest.schema_revisions, list) or not all(
        isinstance(r, str) for r in manifest.schema_revisions
    ):
        return "schema_revisions is not a list of strings"
    if not isinstance(manifest.master_key_versions, list) or not all(
        _is_int(v) for v in manifest.master_key_versions
    ):
        return "master_key_versions is not a list of numbers"
    if not isinstance(manifest.counts, dict) or not all(
        isinstance(k, str) and _is_int(v) for k, v in manifest.counts.items()
    ):
        return "counts is not a table of numbers"
    if not isinstance(manifest.files, dict):
        return "files is not a table"
    for name, entry in manifest.files.items():
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("sha256"), str)
            or not _is_int(entry.get("size"))
        ):
            return f"the entry of {name!r} in files has no sha256 and size"
    return ""


def verify(directory: Path, manifest: Manifest) -> None:
    """Every listed file is there with its size and checksum, or BackupError names it."""
    for name, expected in manifest.files.items():
        if "/" in name or name.startswith("."):
            raise BackupError(f"{MANIFEST} names a file outside the backup: {name!r}")
        path = directory / name
        if not path.is_file():
            raise BackupError(f"{name} is missing from the backup")
        if path.stat().st_size != expected.get("size") or sha256_of(path) != expected.get("sha256"):
            raise BackupError(f"{name} does not match its checksum: the backup is damaged")
