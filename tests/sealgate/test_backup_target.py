"""`sealgate backup` refuses a target in the data dir: such a backup is lost with the
data dir it was meant to save, and every later backup would copy the earlier ones."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.runtime import Runtime
from tests.keystore.conftest import run_sealgate
from tests.sealgate.test_file_modes import BACKED_UP_DATABASE


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
    assert (beside / BACKED_UP_DATABASE).is_file()


@pytest.mark.parametrize("inside", ["", "backups/today"], ids=["its-directory", "below-it"])
def test_a_backup_beside_a_database_kept_elsewhere_is_refused(
    inside: str, test_env: dict[str, str], tmp_path: Path
) -> None:
    """`[database] url` may put the SQLite file outside the data dir: a backup in that
    file's directory is lost with the disk or directory it was meant to save."""
    db_dir = tmp_path / "db"
    db_dir.mkdir()
    env = {**test_env, "SEALGATE_DATABASE_URL": f"sqlite:///{db_dir / 'mail.db'}"}
    assert run_sealgate(env, "init").returncode == 0
    before = sorted(db_dir.rglob("*"))

    done = run_sealgate(env, "backup", str(db_dir / inside))

    assert done.returncode == 1, done.stdout
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"is inside the directory of the database {db_dir}" in done.stderr, done.stderr
    assert sorted(db_dir.rglob("*")) == before


@pytest.mark.usefixtures("runtime")
@pytest.mark.parametrize(
    ("target", "reason"),
    [
        (lambda tmp: tmp / "a-file" / "backup", "Not a directory"),
        (lambda tmp: Path("/proc/sealgate-backup"), "No such file or directory"),
    ],
    ids=["under-a-file", "on-proc"],
)
def test_a_target_that_cannot_be_written_is_named_without_a_traceback(
    target: Callable[[Path], Path], reason: str, test_env: dict[str, str], tmp_path: Path
) -> None:
    """A typo that puts the target under a file, or on a file system that takes no
    directory: the backup ended in an OSError traceback."""
    (tmp_path / "a-file").write_text("not a directory\n")
    path = target(tmp_path)
    done = run_sealgate(test_env, "backup", str(path))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith(f"Error: cannot write the backup into {path}: {reason}")


@pytest.mark.usefixtures("runtime")
def test_a_restore_into_a_data_dir_that_cannot_be_made_is_named_without_a_traceback(
    test_env: dict[str, str], tmp_path: Path
) -> None:
    backup = tmp_path / "backup"
    assert run_sealgate(test_env, "backup", str(backup)).returncode == 0
    (tmp_path / "a-file").write_text("not a directory\n")
    elsewhere = tmp_path / "a-file" / "data"
    done = run_sealgate({**test_env, "SEALGATE_DATA_DIR": str(elsewhere)}, "restore", str(backup))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    [line] = [x for x in done.stderr.splitlines() if x.startswith("Error:")]
    assert (
        line == f"Error: cannot use the data dir {elsewhere}: Not a directory; nothing was changed"
    )


def test_a_restore_that_fails_part_way_says_so_and_runs_again(
    runtime: Runtime, mail_users: dict[str, str], test_env: dict[str, str], tmp_path: Path
) -> None:
    """The ring cannot be written after the database was loaded (here: its temporary
    file's name is taken by a directory): a traceback said nothing of the state left.
    Now restore says it stopped part-way, and running it again finishes it."""
    backup = tmp_path / "backup"
    assert run_sealgate(test_env, "backup", str(backup)).returncode == 0
    fresh = tmp_path / "fresh"
    fresh.mkdir(mode=0o700)
    (fresh / "master.tmp").mkdir()  # where save_ring writes before it renames
    env = {**test_env, "SEALGATE_DATA_DIR": str(fresh)}
    done = run_sealgate(env, "restore", "--force", str(backup))  # PostgreSQL: one database
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "the restore stopped part-way" in done.stderr
    assert "run the restore again" in done.stderr
    (fresh / "master.tmp").rmdir()
    again = run_sealgate(env, "restore", "--force", str(backup))
    assert again.returncode == 0, again.stderr
    listed = run_sealgate(env, "user", "list")
    assert listed.returncode == 0 and "alice@example.test" in listed.stdout, listed.stderr
