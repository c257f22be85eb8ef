"""Every command explains itself, and asking for help or the version stays cheap.

The second promise is checked by what a fresh interpreter has imported, not by a
clock: a test that times itself fails on a busy CI host. The speed itself is
measured in bench/cli_startup.py and recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from sealgate.cli import cli
from tests.keystore.conftest import run_sealgate

# Top-level packages that make a `sealgate` run slow to start; none is needed to
# print help or the version.
HEAVY = ("sqlalchemy", "alembic", "pgpy", "flask", "aiosmtpd", "redis", "cryptography", "argon2")


def walk(
    group: click.Command, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, group
    if isinstance(group, click.Group):
        for name, command in sorted(group.commands.items()):
            yield from walk(command, (*path, name))


ALL_COMMANDS = list(walk(cli))


def test_the_walk_reaches_nested_commands() -> None:
    paths = {path for path, _ in ALL_COMMANDS}
    assert ("keys", "rotate-master") in paths
    assert ("serve",) in paths
    assert len(paths) > 20


@pytest.mark.parametrize(
    ("path", "command"), ALL_COMMANDS, ids=lambda p: " ".join(p) if isinstance(p, tuple) else ""
)
def test_every_command_and_option_has_help(path: tuple[str, ...], command: click.Command) -> None:
    assert (command.help or "").strip(), f"`sealgate {' '.join(path)}` has no help text"
    for param in command.params:
        if isinstance(param, click.Option):
            assert (param.help or "").strip(), (
                f"`sealgate {' '.join(path)}` {param.opts[0]} has no help"
            )
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert command.help.strip().splitlines()[0][:30] in " ".join(result.output.split())


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"sealgate {version('sealgate')}\n"


def _modules_loaded_by(*args: str, may_fail: bool = False) -> set[str]:
    """Run `sealgate ARGS` in a fresh interpreter; the top-level packages it imported."""
    script = (
        "import json, sys\n"
        "from sealgate.cli import main\n"
        f"sys.argv = ['sealgate', *{list(args)!r}]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        f"    assert {may_fail!r} or not exc.code, exc.code\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    loaded: set[str] = set(json.loads(proc.stderr.strip().splitlines()[-1]))
    return loaded


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("--version",),
        ("keys", "--help"),
        ("serve", "--help"),
        ("user", "add", "--help"),
        ("log", "--help"),  # reads the settings file for its number of days
    ],
)
def test_help_and_version_load_no_heavy_package(args: tuple[str, ...]) -> None:
    loaded = _modules_loaded_by(*args)
    assert "click" in loaded and "sealgate" in loaded
    assert not loaded & set(HEAVY), f"`sealgate {' '.join(args)}` imported {loaded & set(HEAVY)}"


def test_the_mail_log_help_says_how_long_this_host_keeps_entries(tmp_path: Path) -> None:
    """`log --help` said "last 20 days" whatever `[admin] mail_log_days` was set to."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    env = {"SEALGATE_DATA_DIR": str(data_dir)}

    def log_help() -> str:
        done = run_sealgate(env, "log", "--help")
        assert done.returncode == 0, done.stderr
        return " ".join(done.stdout.split())

    assert "Entries are kept for 20 days ([admin] mail_log_days)" in log_help()
    (data_dir / "sealgate.toml").write_text("[admin]\nmail_log_days = 9\n")
    shown = log_help()
    assert "Entries are kept for 9 days ([admin] mail_log_days)" in shown
    assert "20" not in shown
    # A settings file with a mistake: help still answers, naming the setting, not a number.
    (data_dir / "sealgate.toml").write_text("[admin]\nmail_log_days = 0\n")
    assert "Entries are kept for [admin] mail_log_days days;" in log_help()


def test_a_database_command_does_load_the_stack(tmp_path: Path) -> None:
    """The check above can fail: a command that opens the database imports SQLAlchemy."""
    loaded = _modules_loaded_by("--data-dir", str(tmp_path), "domain", "list", may_fail=True)
    assert "sqlalchemy" in loaded


def test_cli_constants_match_the_keystore() -> None:
    """Copied into sealgate/cli/keys.py so that `--help` does not import pgpy."""
    from keystore import pgp, rotation
    from sealgate.cli import keys

    assert tuple(sorted(pgp.REVOCATION_REASONS)) == keys.REVOCATION_CODES
    assert keys.DEFAULT_BATCH_SIZE == rotation.DEFAULT_BATCH_SIZE


BENCH = Path(__file__).resolve().parents[2] / "bench" / "cli_startup.py"


def test_the_startup_bench_runs_without_a_baseline() -> None:
    """docs/benchmarks.md's `python bench/cli_startup.py` ended in a traceback: its
    baseline revision imports crcmod, no longer installed. `--baseline none` times this
    tree alone (the numbers are the bench's business; here only that it runs)."""
    done = subprocess.run(
        [sys.executable, str(BENCH), "--baseline", "none", "--runs", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = [line.split() for line in done.stdout.splitlines()[2:]]
    assert [row[:2] for row in rows] == [
        ["sealgate", "--help"],
        ["sealgate", "keys"],
        ["sealgate", "user"],
        ["sealgate", "queue"],
    ]


def test_a_baseline_that_does_not_run_is_one_line_naming_why(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("cli_startup", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    (tmp_path / "sealgate").mkdir()
    (tmp_path / "sealgate" / "__init__.py").write_text("")
    (tmp_path / "sealgate" / "__main__.py").write_text("import crcmod\n")
    refused = bench.refuse_baseline("2fa0a15", tmp_path)
    assert refused.startswith("the baseline 2fa0a15 does not run with the installed packages")
    assert "No module named 'crcmod'" in refused and "--baseline none" in refused
    assert bench.refuse_baseline("HEAD", BENCH.parents[1]) is None
