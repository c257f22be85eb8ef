"""GnuPG, the independent OpenPGP implementation the tests check against, in batch mode.

A plain module rather than a conftest: pytest may load a conftest under a name of
its own, and the registry of homes below must be one list for the whole session.
GnuPG's status lines carry notation values as raw bytes (every signature Sequoia
makes has a binary salt notation), so its output is decoded with replacement.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

_HOMES: list[Path] = []


def stop_agents() -> None:
    """Stop the gpg-agent of every home used since the last call (tests/conftest.py calls it)."""
    while _HOMES:
        home = _HOMES.pop()
        if home.is_dir():  # the agent's socket may live under /run/user instead
            subprocess.run(
                ["gpgconf", "--homedir", str(home), "--kill", "all"],
                capture_output=True,
                check=False,
            )


@dataclass
class GnuPG:
    """gpg in batch mode on its own home directory (never the user's keyring).

    gpg starts an agent per home; every home is remembered here so that the agent
    is stopped after the test, wherever the home was made.
    """

    home: Path

    def __post_init__(self) -> None:
        _HOMES.append(self.home)

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
            error = result.stderr.decode(errors="replace")
            raise AssertionError(f"{' '.join(args)} failed ({result.returncode}): {error}")
        return result

    def import_key(self, data: bytes) -> str:
        return self.run("--status-fd", "2", "--import", input=data).stderr.decode(errors="replace")

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
        return result.stdout.decode() + result.stderr.decode(errors="replace")
