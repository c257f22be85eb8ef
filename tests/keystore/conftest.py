"""Keystore fixtures: the ring of the test data dir, an audit sink, and a throwaway GnuPG."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy.orm as so

from gateway import audit
from gateway.runtime import Runtime
from gateway.settings import Settings
from keystore.masterkey import MasterKeyRing, load_ring


@pytest.fixture
def ring(settings: Settings) -> MasterKeyRing:
    return load_ring(settings.data_dir, env={})


def audit_sink(session: so.Session, action: str, target: str, detail: str) -> None:
    """What the gateway will pass: every key event into the audit log."""
    audit.record(session, action, actor="test", target=target, detail=detail)


@pytest.fixture
def sessions(runtime: Runtime) -> so.sessionmaker[so.Session]:
    return runtime.sessions


@dataclass
class GnuPG:
    """gpg in batch mode on its own home directory (never the user's keyring)."""

    home: Path

    def run(
        self, *args: str, input: bytes | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        cmd = [
            "gpg",
            "--homedir",
            str(self.home),
            "--batch",
            "--no-tty",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--trust-model",
            "always",
            *args,
        ]
        result = subprocess.run(cmd, input=input, capture_output=True, timeout=60, check=False)
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} failed ({result.returncode}): {result.stderr.decode()}"
            )
        return result

    def import_key(self, data: bytes) -> str:
        return self.run("--status-fd", "2", "--import", input=data).stderr.decode()

    def fingerprints(self, *, secret: bool = False) -> list[str]:
        listing = "--list-secret-keys" if secret else "--list-keys"
        out = self.run("--with-colons", listing).stdout.decode()
        lines = out.splitlines()
        return [
            lines[i + 1].split(":")[9]
            for i, line in enumerate(lines)
            if line.startswith(("pub:", "sec:")) and lines[i + 1].startswith("fpr:")
        ]

    def list_packets(self, data: bytes) -> str:
        result = self.run("--list-packets", input=data, check=False)
        return result.stdout.decode() + result.stderr.decode()


@pytest.fixture
def gnupg(tmp_path: Path) -> Iterator[GnuPG]:
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    yield GnuPG(home)
    subprocess.run(
        ["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True, check=False
    )


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
