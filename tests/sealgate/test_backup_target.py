"""`sealgate backup` refuses a target in the data dir: such a backup is lost with the
data dir it was meant to save, and every later backup would copy the earlier ones."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.runtime import Runtime
from tests.keystore.conftest import run_sealgate


def data_dir_of(test_env: dict[str, str]) -> Path:
    return Path(test_env["SEALGATE_DATA_DIR"])


@pytest.mark.usefixtures("runtime")
@pytest.mark.parametrize(
    "target",
    [
        lambda data, tmp: data,
        lambda data, tmp: data / "backups" / "today",
        lambda data, tmp: tmp / "elsewhere" / ".." / "data" / "backup",
        lambda data, tmp: tmp / "link-to-data" / "backup",
    ],
    ids=["the-data-dir", "inside-it", "dot-dot", "through-a-symlink"],
)
def test_a_backup_into_the_data_dir_is_refused(
    target: Callable[[Path, Path], Path], test_env: dict[str, str], tmp_path: Path
) -> None:
    data_dir = data_dir_of(test_env)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link-to-data").symlink_to(data_dir)
    path = target(data_dir, tmp_path)
    before = sorted(data_dir.rglob("*"))

    done = run_sealgate(test_env, "backup", str(path))

    assert done.returncode == 1, done.stdout
    assert done.stderr.count("\n") == 1, done.stderr
    assert "is inside the data dir" in done.stderr, done.stderr
    assert sorted(data_dir.rglob("*")) == before


def test_a_backup_beside_the_data_dir_is_made(runtime: Runtime, test_env: dict[str, str]) -> None:
    beside = data_dir_of(test_env).parent / "data-backup"
    done = run_sealgate(test_env, "backup", str(beside))
    assert done.returncode == 0, done.stderr
    assert (beside / "sealgate.db").is_file()
