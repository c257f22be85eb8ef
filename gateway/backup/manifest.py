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
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise BackupError(f"{path}: unknown backup format {data.get('format')!r}")
    try:
        return Manifest(**data)
    except TypeError:
        raise BackupError(f"{path}: malformed manifest") from None


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
