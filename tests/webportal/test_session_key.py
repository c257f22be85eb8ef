"""The portal's root secret: made once with mode 0600, refused when others can read
it or when it is malformed, never a built-in default. Threat: forged sessions."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from gateway.runtime import Runtime
from webportal import create_app
from webportal.session_key import (
    SESSION_KEY_ENV,
    SESSION_KEY_FILE,
    SessionKeyError,
    derive,
    load_or_create,
)


def test_first_start_creates_a_private_key_file_and_reuses_it(tmp_path: Path) -> None:
    key = load_or_create(tmp_path, env={})
    path = tmp_path / SESSION_KEY_FILE
    assert len(key) == 32 and path.read_bytes() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create(tmp_path, env={}) == key
    other = tmp_path / "other"
    other.mkdir()
    assert load_or_create(other, env={}) != key


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    load_or_create(tmp_path, env={})
    (tmp_path / SESSION_KEY_FILE).chmod(0o640)
    with pytest.raises(SessionKeyError, match="chmod 600"):
        load_or_create(tmp_path, env={})


def test_a_truncated_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / SESSION_KEY_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"short")
    os.close(fd)
    with pytest.raises(SessionKeyError, match="exactly 32 bytes"):
        load_or_create(tmp_path, env={})


def test_key_from_the_environment_in_hex_or_base64(tmp_path: Path) -> None:
    raw = os.urandom(32)
    assert load_or_create(tmp_path, env={SESSION_KEY_ENV: raw.hex()}) == raw
    assert load_or_create(tmp_path, env={SESSION_KEY_ENV: base64.b64encode(raw).decode()}) == raw
    assert not (tmp_path / SESSION_KEY_FILE).exists()


@pytest.mark.parametrize(
    "value",
    [
        "too-short-but-secret",
        base64.b64encode(b"k" * 16).decode(),
        "00" * 32,  # a placeholder, not a key
        "change-me-change-me-change-me-change-me-change-me-change-me-1234",
    ],
)
def test_weak_or_malformed_environment_keys_are_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(SessionKeyError) as caught:
        load_or_create(tmp_path, env={SESSION_KEY_ENV: value})
    assert value not in str(caught.value)


def test_each_purpose_gets_its_own_sub_key() -> None:
    root = os.urandom(32)
    cookie, csrf = derive(root, "session-cookie"), derive(root, "csrf")
    assert len(cookie) == len(csrf) == 32
    assert len({root, cookie, csrf}) == 3
    assert derive(root, "csrf") == csrf


def test_app_signs_with_derived_keys_from_the_data_dir(runtime: Runtime) -> None:
    app = create_app(runtime, testing=True)
    root = (runtime.settings.data_dir / SESSION_KEY_FILE).read_bytes()
    assert app.secret_key == derive(root, "session-cookie")
    assert app.config["WTF_CSRF_SECRET_KEY"] == derive(root, "csrf")
    assert root not in (app.secret_key, app.config["WTF_CSRF_SECRET_KEY"])


def test_app_refuses_to_start_with_a_readable_key_file(runtime: Runtime) -> None:
    create_app(runtime, testing=True)
    (runtime.settings.data_dir / SESSION_KEY_FILE).chmod(0o644)
    with pytest.raises(SessionKeyError):
        create_app(runtime, testing=True)
