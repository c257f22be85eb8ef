"""Run as the service user, as docs/deployment.md does, the commands say what is wrong.

What an admin meets there: a certificate in a directory only root may enter
(`/etc/letsencrypt/live`), `sudo -u sealgate` keeping root's working directory,
which the user may not enter, and a data dir root made for it. Tests run as root,
for whom every directory opens, so the refusal the kernel gives the service user is
played by a patched `stat` (or `chmod`).
"""

from __future__ import annotations

import os
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from sealgate.cli import cli
from sealgate.cli.serve import _enterable_working_dir, _preflight
from tests.conftest import TEST_DATABASE_URL, reset_database


@pytest.fixture(autouse=True)
def _empty_database() -> None:
    """Each test runs `init` on a new installation: on PostgreSQL, an empty database."""
    if TEST_DATABASE_URL:
        reset_database(TEST_DATABASE_URL)


@pytest.fixture
def locked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory whose contents cannot be looked at (as /etc/letsencrypt/live)."""
    locked = tmp_path / "letsencrypt" / "live" / "mail.example.org"
    real_stat = Path.stat

    def stat(self: Path, *, follow_symlinks: bool = True) -> os.stat_result:
        if self.is_relative_to(locked):
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, follow_symlinks=follow_symlinks)

    monkeypatch.setattr(Path, "stat", stat)
    return locked


def _env(test_env: dict[str, str], locked: Path) -> dict[str, str]:
    return {
        **test_env,
        "SEALGATE_SMTP_TLS_CERT": str(locked / "fullchain.pem"),
        "SEALGATE_SMTP_TLS_KEY": str(locked / "privkey.pem"),
    }


def test_init_names_a_certificate_it_may_not_read(test_env: dict[str, str], locked: Path) -> None:
    result = CliRunner().invoke(cli, ["init"], env=_env(test_env, locked))
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # a ClickException, not a traceback
    assert f"TLS file {locked / 'fullchain.pem'}: Permission denied" in result.output
    assert "copy them into the data dir" in result.output


def test_init_on_a_data_dir_of_another_user_says_whose_it_must_be(
    test_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The data dir made by root without `install -d -o sealgate`: the service user's
    `chmod 700` is refused, and init said "cannot create the data dir", which exists."""
    data_dir = Path(test_env["SEALGATE_DATA_DIR"])
    data_dir.mkdir()
    real_chmod = Path.chmod

    def chmod(self: Path, mode: int, *, follow_symlinks: bool = True) -> None:
        if self == data_dir:
            raise PermissionError(1, "Operation not permitted", str(self))
        real_chmod(self, mode, follow_symlinks=follow_symlinks)

    monkeypatch.setattr(Path, "chmod", chmod)
    result = CliRunner().invoke(cli, ["init"], env=test_env)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert f"cannot make the data dir {data_dir} private (chmod 700)" in result.output
    assert "must belong to the user that runs sealgate" in result.output
    assert list(data_dir.iterdir()) == []


def test_serve_names_a_certificate_it_may_not_read(test_env: dict[str, str], locked: Path) -> None:
    assert CliRunner().invoke(cli, ["init"], env=test_env).exit_code == 0
    from gateway.runtime import Runtime
    from gateway.settings import load_settings

    runtime = Runtime.open(load_settings(env=_env(test_env, locked)))
    try:
        with pytest.raises(Exception, match="Permission denied") as caught:
            _preflight(runtime)
    finally:
        runtime.close()
    assert type(caught.value).__name__ == "ClickException"
    assert f"TLS file {locked / 'fullchain.pem'}: Permission denied" in str(caught.value)


def test_serve_leaves_a_working_dir_it_may_not_enter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    monkeypatch.chdir(tmp_path)
    runtime = types.SimpleNamespace(settings=types.SimpleNamespace(data_dir=data_dir))

    _enterable_working_dir(runtime)  # type: ignore[arg-type]
    assert Path.cwd() == tmp_path  # enterable: left alone

    monkeypatch.setattr(os, "access", lambda path, mode: path != ".")
    _enterable_working_dir(runtime)  # type: ignore[arg-type]
    assert Path.cwd() == data_dir
