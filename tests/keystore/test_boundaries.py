"""Dependency rules that keep the keystore reusable and pgpy contained.

keystore/ imports nothing from gateway/ or webportal/ (webportal → gateway →
keystore, never back), and pgpy is imported in exactly one module,
keystore/pgp.py, anywhere in the project.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gateway", "keystore", "webportal", "sealgate")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_keystore_imports_neither_gateway_nor_webportal() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            n for n in _imports(path) if n.split(".")[0] in ("gateway", "webportal", "sealgate")
        )
        for path in (ROOT / "keystore").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}
    assert len(offenders) >= 7  # the scan saw the package


def test_pgpy_is_imported_in_one_module_only() -> None:
    users = sorted(
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if any(n.split(".")[0] == "pgpy" for n in _imports(path))
    )
    assert users == ["keystore/pgp.py"]


def test_gateway_imports_neither_webportal_nor_the_cli() -> None:
    """gateway/ is the domain core: the webmail's Send calls into it, never the reverse."""
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            n for n in _imports(path) if n.split(".")[0] in ("webportal", "sealgate")
        )
        for path in (ROOT / "gateway").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}
    assert len(offenders) >= 30
