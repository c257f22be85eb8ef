"""docs/configuration.md documents every setting, so the admin's reference stays true."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from gateway.settings import SECTIONS

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def documented() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    section = ""
    for line in DOC.read_text(encoding="utf-8").splitlines():
        heading = re.fullmatch(r"## \[(\w+)\]", line)
        if heading:
            section = heading.group(1)
            found[section] = set()
        row = re.match(r"\| (\w+) \|", line)
        if section and row and row.group(1) not in ("key",):
            found[section].add(row.group(1))
    return found


def test_every_setting_is_documented() -> None:
    docs = documented()
    for name, cls in SECTIONS.items():
        keys = {f.name for f in dataclasses.fields(cls)}
        assert name in docs, f"section [{name}] is missing from {DOC.name}"
        assert keys - docs[name] == set(), f"[{name}] keys missing from {DOC.name}"
        assert docs[name] - keys == set(), f"[{name}] documents keys that do not exist"


def documented_defaults() -> dict[tuple[str, str], str]:
    found: dict[tuple[str, str], str] = {}
    section = ""
    for line in DOC.read_text(encoding="utf-8").splitlines():
        heading = re.fullmatch(r"## \[(\w+)\]", line)
        if heading:
            section = heading.group(1)
        row = re.match(r"\| (\w+) \| `([^`]*)` \|", line)
        if section and row:
            found[(section, row.group(1))] = row.group(2)
    return found


def test_every_documented_default_is_the_one_the_code_has() -> None:
    """The table's default column is what a new admin goes by when leaving a key out.
    Rows that describe their default in words (*(empty: …)*) are left to the reader."""
    defaults = documented_defaults()
    assert len(defaults) > 100
    for (section, key), text in defaults.items():
        field = next(f for f in dataclasses.fields(SECTIONS[section]) if f.name == key)
        value = field.default
        if isinstance(value, bool):
            assert text == str(value).lower(), (section, key)
        elif isinstance(value, int | float):
            assert float(text) == value, (section, key, text, value)
        else:
            assert text in (value, f'"{value}"'), (section, key, text, value)
