"""Keystore fixtures: the ring of the test data dir, an audit sink, and a throwaway GnuPG."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy.orm as so

from gateway import audit
from gateway.runtime import Runtime
from gateway.settings import Settings
from keystore.masterkey import MasterKeyRing, load_ring
from tests.gnupg import GnuPG


@pytest.fixture
def ring(settings: Settings) -> MasterKeyRing:
    return load_ring(settings.data_dir, env={})


def audit_sink(session: so.Session, action: str, target: str, detail: str) -> None:
    """What the gateway will pass: every key event into the audit log."""
    audit.record(session, action, actor="test", target=target, detail=detail)


@pytest.fixture
def sessions(runtime: Runtime) -> so.sessionmaker[so.Session]:
    return runtime.sessions


@pytest.fixture
def gnupg(tmp_path: Path) -> Iterator[GnuPG]:
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    yield GnuPG(home)


def run_sealgate(
    test_env: dict[str, str], *args: str, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The real command line in its own process (as an admin runs it)."""
    return subprocess.run(
        [sys.executable, "-m", "sealgate", *args],
        env={**os.environ, **test_env},
        input=input,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
