"""`sealgate init`, `domain`, `user` and `address` through the real command line."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from keystore.masterkey import MasterKeyRing
from tests.conftest import CHEAP_ARGON2, TEST_DATABASE_URL, reset_database


def sealgate(
    data_dir: Path, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **CHEAP_ARGON2, **(env or {})}
    if TEST_DATABASE_URL:
        full_env["SEALGATE_DATABASE_URL"] = TEST_DATABASE_URL
    return subprocess.run(
        [sys.executable, "-m", "sealgate", "--data-dir", str(data_dir), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
        check=False,
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    if TEST_DATABASE_URL:
        reset_database(TEST_DATABASE_URL)
    return tmp_path / "data"


def test_init_creates_everything_once(data_dir: Path) -> None:
    # A base_url written with its trailing slash: the printed link had two.
    env = {"SEALGATE_PORTAL_BASE_URL": "https://secure.example.org/"}
    first = sealgate(data_dir, "init", "--domain", "mail.example.org", env=env)
    assert first.returncode == 0, first.stderr
    assert "portal login:  admin@mail.example.org / " in first.stdout
    assert first.stdout.endswith("  portal:        https://secure.example.org/\n")
    assert "SMTP login:    admin@mail.example.org / " in first.stdout
    assert stat.S_IMODE((data_dir / "master.keys").stat().st_mode) == 0o600
    assert stat.S_IMODE((data_dir / "tls" / "key.pem").stat().st_mode) == 0o600
    assert (data_dir / "tls" / "cert.pem").read_bytes().startswith(b"-----BEGIN CERTIFICATE")
    ring = (data_dir / "master.keys").read_bytes()

    second = sealgate(data_dir, "init", "--domain", "mail.example.org")
    assert second.returncode == 0
    assert "already initialised; nothing changed" in second.stdout
    assert "login:" not in second.stdout
    assert (data_dir / "master.keys").read_bytes() == ring

    users = sealgate(data_dir, "user", "list")
    assert users.stdout.split("\t")[:2] == ["admin@mail.example.org", "admin"]


def test_users_and_addresses(data_dir: Path) -> None:
    assert sealgate(data_dir, "init", "--domain", "example.org").returncode == 0
    assert sealgate(data_dir, "domain", "add", "example.net").returncode == 0
    assert sealgate(data_dir, "domain", "list").stdout.split() == ["example.net", "example.org"]

    added = sealgate(data_dir, "user", "add", "Jane@Example.org")
    assert added.returncode == 0, added.stderr
    assert "account jane@example.org added" in added.stdout
    generated = added.stdout.split("password: ")[1].split()[0]
    assert len(generated) >= 16

    chosen = sealgate(
        data_dir,
        "address",
        "add",
        "jane@example.net",
        "--user",
        "jane@example.org",
        "--password-stdin",
        stdin="a chosen address password\n",
    )
    assert chosen.returncode == 0, chosen.stderr
    assert "a chosen address password" not in chosen.stdout  # never echoed

    again = sealgate(data_dir, "address", "add", "jane@example.net", "--user", "jane@example.org")
    assert again.returncode == 1 and "exists already" in again.stderr
    unhosted = sealgate(data_dir, "address", "add", "jane@other.test", "--user", "jane@example.org")
    assert unhosted.returncode == 1 and "is not a hosted domain" in unhosted.stderr
    bad = sealgate(data_dir, "user", "add", "not an address")
    assert bad.returncode == 1 and "not a valid mail address" in bad.stderr
    assert "Traceback" not in bad.stderr + unhosted.stderr + again.stderr

    passwd = sealgate(data_dir, "address", "passwd", "jane@example.net")
    assert passwd.returncode == 0 and "address password: " in passwd.stdout
    listing = sealgate(data_dir, "address", "list").stdout
    assert "jane@example.net\tjane@example.org" in listing


def test_commands_before_init_and_bad_settings_are_clear(data_dir: Path) -> None:
    before = sealgate(data_dir, "user", "list")
    assert before.returncode == 1
    assert "is not initialised (run `sealgate init` first)" in before.stderr
    assert "Traceback" not in before.stderr

    data_dir.mkdir()
    (data_dir / "sealgate.toml").write_text("[smtp]\nsubmission_port = 'twenty-five'\n")
    bad = sealgate(data_dir, "init")
    assert bad.returncode == 1
    assert "[smtp] submission_port" in bad.stderr and "Traceback" not in bad.stderr
    (data_dir / "sealgate.toml").write_text("[smtp]\nsubmission_port = 587\n")
    env_bad = sealgate(data_dir, "init", env={"SEALGATE_RELAY_SECURITY": "maybe"})
    assert "[relay] security" in env_bad.stderr


@pytest.mark.parametrize(
    "url",
    [
        "garbage",  # not a URL at all
        "nosuchdialect://admin:s3cret-pw@db.example.org/mail",  # no such dialect
        "mysql://admin:s3cret-pw@db.example.org/mail",  # a driver that is not installed
    ],
)
def test_a_database_url_sqlalchemy_cannot_use_is_a_configuration_error(
    data_dir: Path, url: str
) -> None:
    data_dir.mkdir()
    (data_dir / "sealgate.toml").write_text(f"[database]\nurl = {url!r}\n")
    env = {k: v for k, v in os.environ.items() if k != "SEALGATE_DATABASE_URL"}
    for args in (["init"], ["user", "list"]):
        done = subprocess.run(
            [sys.executable, "-m", "sealgate", "--data-dir", str(data_dir), *args],
            capture_output=True,
            text=True,
            env={**env, **CHEAP_ARGON2},
            timeout=120,
            check=False,
        )
        assert done.returncode == 1
        assert "configuration error: [database] url" in done.stderr
        assert "Traceback" not in done.stderr
        assert "s3cret-pw" not in done.stderr  # the URL's password stays out of the message


def test_a_data_dir_with_percent_and_non_ascii_in_its_path_works(tmp_path: Path) -> None:
    """The SQLite URL percent-encodes such a path, and alembic's options go through
    configparser, which read the "%" as interpolation: init ended in a traceback."""
    if TEST_DATABASE_URL:
        reset_database(TEST_DATABASE_URL)
    data_dir = tmp_path / "50% Stra\u00dfe" / "data"
    done = sealgate(data_dir, "init", "--domain", "mail.example.org")
    assert done.returncode == 0, done.stderr
    users = sealgate(data_dir, "user", "list")
    assert users.returncode == 0, users.stderr
    assert users.stdout.startswith("admin@mail.example.org\t")


def test_init_where_the_data_dir_cannot_be_made_says_so(tmp_path: Path) -> None:
    a_file = tmp_path / "data"
    a_file.write_text("not a directory\n")
    env = {"SEALGATE_DATA_DIR": str(a_file)}
    done = subprocess.run(
        [sys.executable, "-m", "sealgate", "init"],
        capture_output=True,
        text=True,
        env={**os.environ, **CHEAP_ARGON2, **env},
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert f"the data dir {a_file} is a file, not a directory" in done.stderr
    assert "Traceback" not in done.stderr

    inside_a_file = a_file / "data"
    done = sealgate(inside_a_file, "init")
    assert done.returncode == 1
    assert f"cannot create the data dir {inside_a_file}: Not a directory" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", [["user", "list"], ["init"]])
def test_a_database_that_does_not_open_says_why(data_dir: Path, command: list[str]) -> None:
    """`init` above all: it is the first command to meet a PostgreSQL database that is
    not there yet (a `createdb` forgotten), and it ended in a traceback."""
    pytest.importorskip("psycopg")
    data_dir.mkdir()
    url = "postgresql+psycopg://sealgate:s3cret-pw@127.0.0.1:1/sealgate"  # nothing listens
    env = {k: v for k, v in os.environ.items() if k != "SEALGATE_DATABASE_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "sealgate", "--data-dir", str(data_dir), *command],
        capture_output=True,
        text=True,
        env={**env, **CHEAP_ARGON2, "SEALGATE_DATABASE_URL": url},
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert f"cannot open the database of {data_dir} (connection failed:" in done.stderr
    assert "Connection refused" in done.stderr
    assert "s3cret-pw" not in done.stderr and "Traceback" not in done.stderr
    assert list(data_dir.iterdir()) == []  # no master key or certificate without a database


def test_init_where_the_sqlite_file_cannot_be_opened_says_why(data_dir: Path) -> None:
    (data_dir / "sealgate.db").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "SEALGATE_DATABASE_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "sealgate", "--data-dir", str(data_dir), "init"],
        capture_output=True,
        text=True,
        env={**env, **CHEAP_ARGON2},
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert f"cannot open the database of {data_dir} (unable to open database file)" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("stdin", "refusal"),
    [
        ("short\n", "the password is too short: at least 10 characters"),
        ("pass\x00word-long\n", "the password holds a control character"),
    ],
)
def test_a_chosen_password_the_portal_would_refuse_is_refused(
    data_dir: Path, stdin: str, refusal: str
) -> None:
    """The portal asks for 10 characters; a NUL can never be sent in AUTH PLAIN."""
    assert sealgate(data_dir, "init", "--domain", "example.org").returncode == 0
    for args in (
        ["user", "passwd", "admin@example.org"],
        ["address", "passwd", "admin@example.org"],
        ["user", "add", "jane@example.org"],
    ):
        done = sealgate(data_dir, *args, "--password-stdin", stdin=stdin)
        assert done.returncode == 1, args
        assert refusal in done.stderr
        assert "Traceback" not in done.stderr
    assert "jane@example.org" not in sealgate(data_dir, "user", "list").stdout


def test_commands_that_wrap_new_keys_refuse_a_ring_that_opens_none(data_dir: Path) -> None:
    """A master.keys of another installation has the same version 1. `keys rotate`,
    `keys revoke`, `address add` and `domain add` wrapped their new keys under it,
    keys the installation's own ring can never open."""
    assert sealgate(data_dir, "init", "--domain", "example.org").returncode == 0
    admin = "admin@example.org"
    right = (data_dir / "master.keys").read_bytes()
    keys_before = sealgate(data_dir, "keys", "list").stdout
    # What `sealgate init` writes on another machine: version 1 as well, another key.
    (data_dir / "master.keys").write_text(MasterKeyRing.generate().to_json())

    message = (
        "the master key ring (master.keys in the data dir, or $SEALGATE_MASTER_KEYS) does not"
        " open the keys the database holds under its version 1: it is not this"
        " installation's ring (restore the right master.keys; nothing was changed)"
    )
    for args in (
        ("keys", "rotate", admin),
        ("keys", "revoke", admin, "--reason", "test"),
        ("address", "add", "carol@example.org", "--user", admin),
        ("domain", "add", "other.example"),
    ):
        done = sealgate(data_dir, *args)
        assert done.returncode == 1, args
        assert message in done.stderr and "Traceback" not in done.stderr, args
        assert len(done.stderr.strip().splitlines()) == 1, args
    assert sealgate(data_dir, "keys", "list").stdout == keys_before
    assert "carol@" not in sealgate(data_dir, "address", "list").stdout
    assert "other.example" not in sealgate(data_dir, "domain", "list").stdout

    # The installation's own ring: the same commands work.
    (data_dir / "master.keys").write_bytes(right)
    rotated = sealgate(data_dir, "keys", "rotate", admin)
    assert rotated.returncode == 0, rotated.stderr
    added = sealgate(data_dir, "address", "add", "carol@example.org", "--user", admin)
    assert added.returncode == 0, added.stderr


@pytest.mark.parametrize(
    ("stored", "given"),
    [("straße.test", "xn--strae-oqa.test"), ("xn--bcher-kva.test", "bücher.test")],
)
def test_an_idn_address_is_stored_in_its_domains_form(
    data_dir: Path, stored: str, given: str
) -> None:
    """An address (or alias) given in the other IDNA form of its domain is stored in the
    form the domain is stored in: one address, one spelling in lists and keys."""
    assert sealgate(data_dir, "init").returncode == 0
    assert sealgate(data_dir, "domain", "add", stored).returncode == 0
    assert sealgate(data_dir, "user", "add", f"anna@{stored}").returncode == 0

    added = sealgate(data_dir, "address", "add", f"anna2@{given}", "--user", f"anna@{stored}")
    assert added.returncode == 0, added.stderr
    alias = sealgate(data_dir, "alias", "add", f"info@{given}", f"anna2@{stored}")
    assert alias.returncode == 0, alias.stderr

    addresses = sealgate(data_dir, "address", "list").stdout
    assert f"anna2@{stored}\t" in addresses, addresses
    assert given not in addresses, addresses
    aliases = sealgate(data_dir, "alias", "list").stdout
    assert f"info@{stored}" in aliases and given not in aliases, aliases
    again = sealgate(data_dir, "address", "add", f"anna2@{stored}", "--user", f"anna@{stored}")
    assert "exists already" in again.stderr, again.stderr
    removed = sealgate(data_dir, "alias", "remove", f"info@{given}")
    assert removed.returncode == 0, removed.stderr
