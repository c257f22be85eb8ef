"""docs/deployment.md stays true to the code an admin runs it against.

Every `sealgate …` command line in it (and in the unit file's comments) parses with
the CLI's own click parser, every `[section] key` it names is a setting, every TOML
example loads as a sealgate.toml, and its commands call the binary the unit starts.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from gateway.settings import SECTIONS, load_settings
from sealgate.cli import cli

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "deployment.md"
UNIT = ROOT / "contrib" / "systemd" / "sealgate.service"
BINARY = "/opt/sealgate/bin/sealgate"
SHELL_ENDS = {"&&", "||", ";", "|", ">", ">>", "2>&1", ">/dev/null"}


def command_lines() -> list[str]:
    """The arguments after each `sealgate` (the venv's binary, or bare in backticks)."""
    found = []
    for text in (DOC.read_text(encoding="utf-8"), UNIT.read_text(encoding="utf-8")):
        for line in text.splitlines():
            for match in re.finditer(rf"{re.escape(BINARY)} ([^`\n]+)", line):
                found.append(match.group(1))
            for match in re.finditer(r"`sealgate ([^`\n]+)`", line):
                found.append(match.group(1))
    return found


def arguments(line: str) -> list[str]:
    words = []
    line = re.sub(r"\$\([^)]*\)", "WORD", line)  # $(date +%F): one word to the shell
    for word in shlex.split(line, comments=True):
        if word in SHELL_ENDS or word.startswith((">", "2>")):
            break
        words.append(word)
    return words


def walk(group: click.Command) -> Iterator[click.Command]:
    yield group
    if isinstance(group, click.Group):
        for command in group.commands.values():
            yield from walk(command)


def test_the_doc_has_command_lines() -> None:
    lines = command_lines()
    assert any(arguments(line)[2:3] == ["init"] for line in lines), lines
    assert any("backup" in arguments(line) for line in lines), lines


@pytest.mark.parametrize("line", command_lines())
def test_every_command_line_parses(line: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for command in walk(cli):
        if not isinstance(command, click.Group):  # leaves only: parse, do nothing
            monkeypatch.setattr(command, "callback", lambda **kwargs: None)
    args = arguments(line)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, f"sealgate {shlex.join(args)}: {result.output}"


def test_every_named_setting_exists() -> None:
    text = DOC.read_text(encoding="utf-8")
    named = set()
    # `[smtp] tls_cert`/`tls_key` names two keys of one section.
    for match in re.finditer(r"`\[(\w+)\] (\w+)`((?:/`\w+`)*)", text):
        section = match.group(1)
        for key in [match.group(2), *re.findall(r"`(\w+)`", match.group(3))]:
            named.add((section, key))
    assert ("smtp", "tls_key") in named and ("imap", "tls_port") in named
    for section, key in sorted(named):
        assert section in SECTIONS, f"[{section}] is no settings section"
        keys = {f.name for f in dataclasses.fields(SECTIONS[section])}
        assert key in keys, f"[{section}] {key} is no setting"


def test_every_toml_example_loads(tmp_path: Path) -> None:
    blocks = re.findall(r"```toml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert blocks
    for number, block in enumerate(blocks):
        data_dir = tmp_path / str(number)
        data_dir.mkdir()
        (data_dir / "sealgate.toml").write_text(block, encoding="utf-8")
        settings = load_settings(data_dir, env={})  # unknown keys and bad values raise
        assert settings.smtp.hostname == "mail.example.org"


def test_the_doc_runs_the_binary_the_unit_starts() -> None:
    unit = UNIT.read_text(encoding="utf-8").splitlines()
    assert f"ExecStart={BINARY} serve" in unit
    assert "User=sealgate" in unit
    assert "Environment=SEALGATE_DATA_DIR=/var/lib/sealgate" in unit
    text = DOC.read_text(encoding="utf-8")
    assert "python3 -m venv /opt/sealgate" in text
    assert f"sudo -u sealgate {BINARY} --data-dir /var/lib/sealgate init" in text
    # `sudo -u USER VAR=value command` needs sudo's setenv: no command relies on it.
    for line in [*text.splitlines(), *unit]:
        if line.startswith(("    ", "#")):
            assert not re.search(r"sudo -u \w+ [A-Z_]+=", line), line
