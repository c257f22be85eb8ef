"""Settings: TOML file, environment overrides, and errors that name the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.dnsrecords import records
from gateway.settings import SettingsError, load_settings


def test_defaults_without_file(tmp_path: Path) -> None:
    s = load_settings(tmp_path, env={})
    assert s.smtp.submission_port == 2587
    assert s.smtp.tls_port == 2465
    assert s.portal.port == 8080
    # Login passwords: OWASP's Argon2id (19 MiB, t=2, p=1); secure pages keep RFC 9106 option 2.
    cost = (s.passwords.time_cost, s.passwords.memory_cost, s.passwords.parallelism)
    assert cost == (2, 19456, 1)
    assert s.passwords.login_cache_seconds == 120
    assert (s.securepage.kdf_time_cost, s.securepage.kdf_memory_cost) == (3, 65536)
    assert s.database_url == f"sqlite:///{tmp_path / 'sealgate.db'}"


def test_file_then_environment(tmp_path: Path) -> None:
    (tmp_path / "sealgate.toml").write_text(
        '[smtp]\nhostname = "mx.example.org"\nsubmission_port = 587\n'
        '[relay]\nhost = "smarthost"\nsecurity = "tls"\n'
    )
    s = load_settings(tmp_path, env={"SEALGATE_SMTP_SUBMISSION_PORT": "1587"})
    assert s.smtp.hostname == "mx.example.org"
    assert s.smtp.submission_port == 1587
    assert s.relay.security == "tls"


def test_data_dir_from_environment(tmp_path: Path) -> None:
    s = load_settings(None, env={"SEALGATE_DATA_DIR": str(tmp_path)})
    assert s.data_dir == tmp_path.resolve()


@pytest.mark.parametrize(
    ("toml", "env", "named"),
    [
        ("[smtp]\nsubmission_port = 'x'\n", {}, "[smtp] submission_port"),
        ("[smtp]\nsubmision_port = 25\n", {}, "[smtp] submision_port"),
        ("[relay]\nsecurity = 'maybe'\n", {}, "[relay] security"),
        ("", {"SEALGATE_PORTAL_PORT": "eighty"}, "SEALGATE_PORTAL_PORT"),
        ("", {"SEALGATE_SMTP_TLS_PORT": "70000"}, "[smtp] tls_port"),
        ("[smtpd]\nx = 1\n", {}, "[smtpd]"),
        ("[smtp\n", {}, "not valid TOML"),
        # nan passes every "not negative" check, then breaks a timer or an int().
        ("[smtp]\nidle_timeout = nan\n", {}, "[smtp] idle_timeout: must be a finite number"),
        ("[relay]\npoll_interval = inf\n", {}, "[relay] poll_interval"),
        ("", {"SEALGATE_PASSWORDS_LOGIN_CACHE_SECONDS": "nan"}, "[passwords] login_cache"),
        ("", {"SEALGATE_RELAY_TIMEOUT": "1e400"}, "SEALGATE_RELAY_TIMEOUT"),
        ("[security]\nknown_client_days = -1\n", {}, "[security] known_client_days"),
        ("", {"SEALGATE_SECURITY_KNOWN_CLIENT_DAYS": "99999"}, "[security] known_client_days"),
        ("[smtp]\ninbound_refusal_window = 0\n", {}, "[smtp] inbound_refusal_window"),
        ("[smtp]\ninbound_refusal_clients = 0\n", {}, "[smtp] inbound_refusal_clients"),
        ("[smtp]\ninbound_refusal_exempt = 'postfix.lan'\n", {}, "'postfix.lan' is not"),
    ],
)
def test_bad_values_name_the_key(
    tmp_path: Path, toml: str, env: dict[str, str], named: str
) -> None:
    (tmp_path / "sealgate.toml").write_text(toml)
    with pytest.raises(SettingsError, match=named.replace("[", r"\[").replace("]", r"\]")):
        load_settings(tmp_path, env=env)


@pytest.mark.parametrize(
    ("name", "named"),
    [
        # A typo in the environment was ignored while the same typo in the file stopped
        # start-up: the admin's port or relay silently stayed the default.
        ("SEALGATE_SMTP_SUBMISION_PORT", "SEALGATE_SMTP_SUBMISION_PORT: [smtp] has no key"),
        ("SEALGATE_RELAY_HOSTNAME", "[relay] has no key hostname"),
        ("SEALGATE_SECUREPAGE_VALID_DAY", "[securepage] has no key valid_day"),
    ],
)
def test_an_unknown_setting_in_the_environment_is_named(
    tmp_path: Path, name: str, named: str
) -> None:
    with pytest.raises(SettingsError, match=re.escape(named)):
        load_settings(tmp_path, env={name: "1"})


def test_environment_variables_that_are_not_settings_are_left_alone(tmp_path: Path) -> None:
    """Secrets, the data dir and the test and benchmark switches share the prefix but name
    no section."""
    env = {
        name: "x"
        for name in (
            "SEALGATE_MASTER_KEYS", "SEALGATE_SESSION_KEY", "SEALGATE_TEST_DATABASE_URL",
            "SEALGATE_SCREENSHOTS_DIR", "SEALGATE_HYPOTHESIS_SEED", "SEALGATE_BENCH_PROFILE_DIR",
        )
    }  # fmt: skip
    assert load_settings(tmp_path, env=env).smtp.submission_port == 2587


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("login_cache_seconds", "901"),
        ("time_cost", "0"),
        ("memory_cost", "4"),
        # Argon2's fields are 32 bits: beyond them every command died with a traceback,
        # and a cost just inside them hung every command on its start-up hash.
        ("memory_cost", "99999999999"),
        ("memory_cost", "4194305"),
        ("time_cost", "100000"),
        ("parallelism", "65"),
    ],
)
def test_password_settings_are_bounded(tmp_path: Path, key: str, value: str) -> None:
    with pytest.raises(SettingsError, match=rf"\[passwords\] {key}"):
        load_settings(tmp_path, env={f"SEALGATE_PASSWORDS_{key.upper()}": value})


@pytest.mark.parametrize(
    ("env", "named"),
    [
        # A line break went into the EHLO reply, Received: and `sealgate dns`'s zone.
        ({"SEALGATE_SMTP_HOSTNAME": "mx\r\nX-Evil: 1"}, "[smtp] hostname"),
        ({"SEALGATE_SMTP_HOSTNAME": ""}, "[smtp] hostname"),  # init died on it
        ({"SEALGATE_SMTP_HOSTNAME": "mail example.org"}, "[smtp] hostname"),
        ({"SEALGATE_IMAP_HOSTNAME": "imap..example.org"}, "[imap] hostname"),
    ],
)
def test_a_hostname_that_is_no_host_name_is_refused(
    tmp_path: Path, env: dict[str, str], named: str
) -> None:
    with pytest.raises(SettingsError, match=re.escape(named) + ".* is not a host name"):
        load_settings(tmp_path, env=env)


@pytest.mark.parametrize(
    "hostname", ["localhost", "mail.example.org", "mail.example.org.", "xn--bcher-kva.example"]
)
def test_host_names_are_taken(tmp_path: Path, hostname: str) -> None:
    loaded = load_settings(tmp_path, env={"SEALGATE_SMTP_HOSTNAME": hostname})
    assert loaded.smtp.hostname == hostname
    assert load_settings(tmp_path, env={}).imap.hostname == ""  # empty: [smtp] hostname


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("spf", "v=spf1 include:spf.müller.test -all"),
        ("dmarc", "v=DMARC1; p=none; rua=mailto:dmarc@müller.test"),
        ("dmarc", "v=DMARC1; p=none\t"),
    ],
)
def test_a_dns_record_that_is_not_ascii_is_refused_naming_the_setting(
    tmp_path: Path, key: str, value: str
) -> None:
    """`sealgate dns show` died with a UnicodeEncodeError traceback on such a value."""
    (tmp_path / "sealgate.toml").write_text(f'[dns]\n{key} = "{value}"\n', encoding="utf-8")
    with pytest.raises(SettingsError, match=re.escape(f"[dns] {key}: ") + ".* ASCII"):
        load_settings(tmp_path, env={})


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["spf", "dmarc"]), st.text(max_size=600))
def test_a_dns_record_that_loads_prints_as_itself(tmp_path: Path, key: str, rest: str) -> None:
    value = ("v=spf1 " if key == "spf" else "v=DMARC1; ") + rest
    try:
        loaded = load_settings(tmp_path, env={f"SEALGATE_DNS_{key.upper()}": value})
    except SettingsError as exc:
        assert str(exc).startswith("[dns] ") and key in str(exc) and "\n" not in str(exc)
        return
    printed = records.txt_value(getattr(loaded.dns, key))
    strings = re.findall(r'"([^"]*)"', printed)
    assert "".join(strings) == value and all(len(s.encode()) <= 255 for s in strings)


@pytest.mark.parametrize(
    ("base_url", "reason"),
    [
        # Links read https:///s/… and `sealgate dns` pointed openpgpkey. at localhost.
        ("https://", "it names no host"),
        ("https://secure.example.org?x=1", "no ? or #"),  # the link's path became a query
        ("https://secure.example.org#top", "no ? or #"),
        ("https://secure example.org", "' ' in it"),  # a link cut in two
        ("https://secure.example.org/\nX-Evil: 1", "'\\n' in it"),
        ("https://bücher.example", "xn-- form"),
        ("https://secure.example.org:99999", "its port"),
        ("https://secure..example.org", "is not a host name"),
    ],
)
def test_a_base_url_no_link_can_be_built_on_is_refused(
    tmp_path: Path, base_url: str, reason: str
) -> None:
    with pytest.raises(
        SettingsError, match=re.escape("[portal] base_url: ") + ".*" + re.escape(reason)
    ):
        load_settings(tmp_path, env={"SEALGATE_PORTAL_BASE_URL": base_url})


def test_a_base_url_with_a_password_is_refused_without_repeating_it(tmp_path: Path) -> None:
    """Every notification mail would carry it; the error must not print it either."""
    with pytest.raises(SettingsError) as caught:
        load_settings(tmp_path, env={"SEALGATE_PORTAL_BASE_URL": "https://u:s3cret@x.example"})
    assert "no user or password" in str(caught.value) and "s3cret" not in str(caught.value)


@pytest.mark.parametrize(
    "base_url",
    [
        "https://localhost:8080",
        "https://secure.example.org/",
        "https://secure.example.org/mail",
        "http://127.0.0.1:8080",
        "https://[::1]:8443",
        "https://xn--bcher-kva.example",
    ],
)
def test_base_urls_that_links_can_be_built_on_are_taken(tmp_path: Path, base_url: str) -> None:
    loaded = load_settings(tmp_path, env={"SEALGATE_PORTAL_BASE_URL": base_url})
    assert loaded.portal.base_url == base_url


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        # Above the first [section] header: it was "unknown section [hostname]".
        (
            'hostname = "mail.example.org"\n',
            "is outside any [section] (it is a key of [smtp], [imap]",
        ),
        ("colour = 1\n", "colour in"),
        ("[smtp]\nport = 587\n", "[smtp] port; did you mean tls_port or submission_port"),
        ("[database]\nuri = 'x'\n", "[database] uri; did you mean url?"),
        ("[relay]\npass = 'x'\n", "[relay] pass; did you mean password?"),
    ],
)
def test_a_misplaced_or_misspelt_key_is_named_with_where_it_belongs(
    tmp_path: Path, toml: str, expected: str
) -> None:
    (tmp_path / "sealgate.toml").write_text(toml)
    with pytest.raises(SettingsError, match=re.escape(expected)):
        load_settings(tmp_path, env={})


def test_a_misspelt_environment_variable_gets_the_key_it_is_close_to(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=re.escape("has no key pass; did you mean password?")):
        load_settings(tmp_path, env={"SEALGATE_RELAY_PASS": "x"})
