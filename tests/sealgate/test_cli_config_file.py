"""A settings file that cannot be read is one line naming it, for every command.

`sealgate.toml` made a directory by a careless `mkdir -p` (or a file the service
user may not read) ended every command in a traceback."""

from __future__ import annotations

from pathlib import Path

from tests.keystore.conftest import run_sealgate


def test_a_settings_file_that_is_a_directory_is_named(test_env: dict[str, str]) -> None:
    data_dir = Path(test_env["SEALGATE_DATA_DIR"])
    (data_dir / "sealgate.toml").mkdir(parents=True)

    for command in (["init"], ["user", "list"], ["serve"]):
        done = run_sealgate(test_env, *command)
        assert done.returncode == 1, done.stdout
        assert done.stderr.count("\n") == 1, done.stderr
        assert f"{data_dir / 'sealgate.toml'}: cannot read it" in done.stderr, done.stderr
    assert [p.name for p in data_dir.iterdir()] == ["sealgate.toml"]
