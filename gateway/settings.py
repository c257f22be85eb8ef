"""The one typed settings object: `<data dir>/sealgate.toml`, then `SEALGATE_<SECTION>_<KEY>`.

Everything tunable lives here so no module reads the environment or hard-codes a
limit on its own. A bad value stops start-up with `SettingsError` naming the key,
because a typo in a mail gateway's configuration should never be silently ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import os
import re
import tomllib
import types
import typing
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

DEFAULT_DATA_DIR = "./sealgate-data"
ENV_PREFIX = "SEALGATE_"
SETTINGS_FILE = "sealgate.toml"


class SettingsError(ValueError):
    """A setting is missing, unknown or malformed; the message names the key."""


@dataclass(frozen=True)
class SmtpSettings:
    hostname: str = "localhost"
    listen: str = "127.0.0.1"
    submission_port: int = 2587
    tls_port: int = 2465
    inbound: bool = True
    inbound_port: int = 2525
    max_message_size: int = 25 * 1024 * 1024
    max_recipients: int = 100
    idle_timeout: float = 300.0
    # During DATA the deadline grows by each chunk's size over this rate (bytes per
    # second, as Postfix's smtpd_min_data_rate): a slow but steady upload of a large
    # message is not cut at idle_timeout, a trickle is.
    min_data_rate: int = 500
    max_connections_per_client: int = 20
    max_auth_failures_per_client: int = 10
    auth_failure_window: float = 600.0
    # The MX's refusals (550 unknown address, relaying denied, ...) per client IP (an
    # IPv6 /64 as one) within the window, over every connection: past the limit, 421 at
    # connect and 450 per RCPT until older refusals leave the window (0 turns it off).
    inbound_refusal_limit: int = 50
    inbound_refusal_window: float = 3600.0
    # With [limits] storage = "memory://": how many clients the serve process keeps counts of.
    inbound_refusal_clients: int = 50_000
    # Clients never counted: a mail server in front that relays everyone's mail (Postfix).
    inbound_refusal_exempt: str = "127.0.0.1, ::1"
    max_mime_depth: int = 32
    max_mime_parts: int = 1000
    tls_cert: str = "tls/cert.pem"
    tls_key: str = "tls/key.pem"


@dataclass(frozen=True)
class PortalSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    base_url: str = "https://localhost:8080"
    tls: bool = True
    threads: int = 8
    session_minutes: int = 180
    # Where the portal's rate-limit counters live: "memory://" (one process) or a
    # Redis URL such as "redis://127.0.0.1:6379/0" when several processes share them.
    ratelimit_storage: str = "memory://"
    login_rate_limit: str = "10/minute;50/hour"
    # Reverse proxies whose X-Forwarded-For/-Proto the portal believes: "" (none, the
    # default: the peer is the client), a count of proxy hops ("1"), or a list of
    # networks ("127.0.0.1/32, 10.0.0.0/8") the peer must be in. See trusted_proxies().
    trusted_proxies: str = ""


@dataclass(frozen=True)
class RelaySettings:
    host: str = ""
    port: int = 25
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str = ""
    password: str = ""
    ca_file: str = ""
    # EHLO, STARTTLS, AUTH and QUIT; the rest has RFC 5321 4.5.3.2's times.
    timeout: float = 60.0
    # The TCP connection alone (Postfix's smtp_connect_timeout): a host that does not
    # answer at all is given up on soon, one that answers gets the greeting's 5 minutes.
    connect_timeout: float = 30.0
    greeting_timeout: float = 300.0
    mail_timeout: float = 300.0
    rcpt_timeout: float = 300.0
    data_init_timeout: float = 120.0
    data_block_timeout: float = 180.0
    data_done_timeout: float = 600.0
    first_retry: float = 300.0
    max_retry_interval: float = 4 * 3600.0
    max_age: float = 5 * 24 * 3600.0
    poll_interval: float = 1.0
    batch_size: int = 20
    lease_seconds: float = 3600.0

    def longest_attempt(self) -> float:
        """Seconds one delivery may wait on the peer, the transfer's progress aside."""
        return (
            4 * self.timeout
            + self.connect_timeout
            + self.greeting_timeout
            + self.mail_timeout
            + self.rcpt_timeout
            + self.data_init_timeout
            + self.data_block_timeout
            + self.data_done_timeout
        )


# A delivery is cut off at this share of the lease, so no second worker takes the
# row while the first may still be talking to the smarthost.
LEASE_SHARE = 0.8


@dataclass(frozen=True)
class EncryptionSettings:
    subject_tag: str = "[encrypt]"


@dataclass(frozen=True)
class KeysSettings:
    """Keys of external recipients (imports, Web Key Directory) and the budget for
    parsing OpenPGP data from outside."""

    wkd: bool = True
    wkd_timeout: float = 5.0
    wkd_cache_ttl: float = 86400.0
    wkd_failure_ttl: float = 900.0
    wkd_refresh_interval: float = 3600.0
    max_key_bytes: int = 512 * 1024
    parse_timeout: float = 5.0
    parse_memory_mb: int = 256


# [database] dead_server_seconds (see gateway.db.dead_server_options).
DEAD_SERVER_SECONDS = 12


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = ""
    echo: bool = False
    # How long a process trusts what it read about senders, recipients, rules, the
    # policy and current keys (gateway.lookups); its own writes drop them at once.
    lookup_cache_seconds: float = 5.0
    # PostgreSQL: how long a server that stops answering (host paused, network cut,
    # without closing the connection) may hold a request before it counts as down
    # (gateway.db.dead_server_options: libpq's connect_timeout, TCP keepalives and
    # tcp_user_timeout); 0 leaves libpq's defaults (a hang of minutes, or for ever).
    dead_server_seconds: int = DEAD_SERVER_SECONDS


@dataclass(frozen=True)
class PasswordSettings:
    """Argon2id cost of login passwords, and the verified-credential cache in front of it.

    The defaults are OWASP's Argon2id recommendation (19 MiB, 2 passes, 1 lane): about
    40 ms of one core, no helper threads, so logins cannot eat the machine; hashes made
    with other costs are rewritten at the next right login. Tests lower the cost.
    Secure pages have their own, higher cost ([securepage] kdf_*).
    """

    time_cost: int = 2
    memory_cost: int = 19456
    parallelism: int = 1
    max_concurrent_hashes: int = 4
    max_password_bytes: int = 1024
    # How long a right login is remembered (gateway.credential_cache); 0 turns it off.
    login_cache_seconds: float = 120.0
    login_cache_entries: int = 10000


MAX_KNOWN_CLIENT_DAYS = 3650


@dataclass(frozen=True)
class SecuritySettings:
    """Account security: second factor, lockout, login alerts, activity retention."""

    totp_issuer: str = "sealgate"
    fresh_login_minutes: int = 10
    lockout_threshold: int = 10
    lockout_window: float = 900.0
    lockout_first: float = 300.0
    lockout_max: float = 86400.0
    # "database", or a Redis URL such as "redis://127.0.0.1:6379/0".
    lockout_storage: str = "database"
    alert_interval: float = 900.0
    alert_sender: str = ""
    activity_days: int = 90
    # How long a client stays "known" after a successful login (gateway.known_clients):
    # its failures then lock only itself, not the account. 0 turns known clients off.
    known_client_days: int = 30
    # How long an open SMTP or IMAP connection goes on its login before asking again
    # whether it holds (account and domain enabled, password or app password
    # unchanged): at most this many seconds after `user disable`, the connection is
    # cut. One database read per connection and interval, not per message or command.
    session_recheck_seconds: float = 5.0


# Bounds on the Argon2id cost of a secure page: checked at start-up for the
# settings, and again whenever stored parameters are read back (a tampered row
# must not make the portal spend unbounded memory or time).
SECUREPAGE_MAX_TIME_COST = 16
SECUREPAGE_MAX_MEMORY_COST = 4 * 1024 * 1024  # KiB (4 GiB)
SECUREPAGE_MAX_PARALLELISM = 64


@dataclass(frozen=True)
class SecurePageSettings:
    """Password-protected pages for external recipients without a key (issue 5).

    The Argon2id defaults are RFC 9106's second recommended option; tests lower them.
    """

    valid_days: int = 30
    max_valid_days: int = 90
    max_failures: int = 10
    rate_limit: str = "10/minute;60/hour"
    kdf_time_cost: int = 3
    kdf_memory_cost: int = 65536
    kdf_parallelism: int = 4
    max_concurrent_derivations: int = 4
    min_password_length: int = 8
    generated_password_length: int = 16
    show_subject: bool = False
    notification_from: str = ""
    unlock_minutes: int = 30
    max_reply_bytes: int = 10 * 1024 * 1024
    max_replies_per_link: int = 20
    history_days: int = 90
    purge_interval: float = 3600.0


@dataclass(frozen=True)
class WebmailSettings:
    """The webmail (issue 7): list pages, attachments, the compose page's key lookups."""

    per_page: int = 50
    # All attachments of one message together; the whole message must also fit
    # [smtp] max_message_size (base64 makes attachments a third larger).
    max_attachment_bytes: int = 18 * 1024 * 1024
    recipient_lookup_timeout: float = 4.0


# The default in-flight budget follows from the memory the whole `sealgate serve`
# process aims to stay under: what it holds idle, and what one message costs at its
# peak per byte of its size (SMTP line buffers, MIME parse, pgpy's copies, the
# armored ciphertext, the database write), measured with bench/memory.py.
MEMORY_AIM_BYTES = 1536 * 1024 * 1024
MEMORY_BASELINE_BYTES = 256 * 1024 * 1024
MEMORY_COST_PER_MESSAGE_BYTE = 12
DEFAULT_IN_FLIGHT_BYTES = (MEMORY_AIM_BYTES - MEMORY_BASELINE_BYTES) // MEMORY_COST_PER_MESSAGE_BYTE


@dataclass(frozen=True)
class LimitsSettings:
    """Bounds across the whole process (issue 10): bytes of messages in flight, and what
    decrypting one stored message may cost; and where the SMTP per-client counters
    (connections, AUTH failures) live."""

    # "memory://" (one process) or a Redis URL such as "redis://127.0.0.1:6379/0",
    # so several `serve` processes count together.
    storage: str = "memory://"
    in_flight_bytes: int = DEFAULT_IN_FLIGHT_BYTES
    decrypt_max_bytes: int = 64 * 1024 * 1024
    decrypt_timeout: float = 10.0
    decrypt_memory_mb: int = 1024


@dataclass(frozen=True)
class AdminSettings:
    """The admin console and its background jobs (issue 12)."""

    per_page: int = 50
    mail_log_days: int = 20
    mail_log_purge_interval: float = 3600.0
    rotation_poll_interval: float = 5.0
    rotation_batch_size: int = 100
    # A rotation whose process has not reported for this long is resumed by another.
    rotation_stale_seconds: float = 120.0


@dataclass(frozen=True)
class LoggingSettings:
    """How `sealgate serve` writes its log (to standard error; journald under systemd)."""

    format: Literal["text", "json"] = "text"


@dataclass(frozen=True)
class MetricsSettings:
    """`/metrics` (Prometheus) and `/healthz` on a listener of their own (gateway.metrics)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 9464


@dataclass(frozen=True)
class DnsSettings:
    """What `sealgate dns DOMAIN` prints for each hosted domain (and `dns check` expects)."""

    # MX and SRV target; empty means [smtp] hostname.
    mail_host: str = ""
    submission_port: int = 587
    submissions_port: int = 465
    # 0 publishes "not offered" (RFC 6186 target ".").
    imaps_port: int = 993
    spf: str = "v=spf1 mx -all"
    dmarc: str = "v=DMARC1; p=quarantine; adkim=r; aspf=r"
    ttl: int = 3600


@dataclass(frozen=True)
class FilterSettings:
    """The Postfix after-queue content-filter listener (gateway.postfix.filter)."""

    enabled: bool = False
    listen: str = "127.0.0.1"
    port: int = 10026
    # Only connections from these addresses/networks are served (comma-separated).
    trusted_sources: str = "127.0.0.1, ::1"


@dataclass(frozen=True)
class ImapSettings:
    """IMAP for mail programs (issue 11); it listens on `[smtp] listen` with the SMTP
    certificate. Production ports are 143 (STARTTLS) and 993 (implicit TLS)."""

    enabled: bool = True
    port: int = 2143
    tls_port: int = 2993
    # The server name mail programs are told to use (autoconfig, setup page);
    # empty: `[smtp] hostname`.
    hostname: str = ""
    max_append_size: int = 25 * 1024 * 1024
    max_connections_per_client: int = 20
    # Autologout: seconds a client may stay silent (RFC 9051: at least 30 minutes).
    idle_timeout: float = 1800.0
    # How often an idling client's folder is looked at when no change notice came
    # (PostgreSQL LISTEN/NOTIFY wakes it at once; SQLite relies on this).
    idle_poll_interval: float = 1.0


def _cores() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True)
class WorkersSettings:
    """The pool of processes that runs the SMTP pipeline's CPU work (gateway.workers),
    and how messages finishing together share a commit (gateway.groupcommit)."""

    # Worker processes; the default is one per core. 0 runs the pipeline in the serve
    # process itself (in threads), as the webmail always does.
    processes: int = field(default_factory=_cores)
    # Larger messages stay in the serve process: a copy to a worker would double
    # their memory (docs/configuration.md has the measurement).
    in_process_above: int = 8 * 1024 * 1024
    # At most this many messages share one transaction (and one fsync).
    max_group: int = 32
    # While one worker is busy, another is handed messages only once this many wait
    # (and their prepare outweighs a commit): fewer, larger groups cost less CPU per
    # message (docs/configuration.md).
    backlog: int = 2


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    portal: PortalSettings = field(default_factory=PortalSettings)
    relay: RelaySettings = field(default_factory=RelaySettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    encryption: EncryptionSettings = field(default_factory=EncryptionSettings)
    keys: KeysSettings = field(default_factory=KeysSettings)
    passwords: PasswordSettings = field(default_factory=PasswordSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    securepage: SecurePageSettings = field(default_factory=SecurePageSettings)
    webmail: WebmailSettings = field(default_factory=WebmailSettings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    admin: AdminSettings = field(default_factory=AdminSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    dns: DnsSettings = field(default_factory=DnsSettings)
    filter: FilterSettings = field(default_factory=FilterSettings)
    imap: ImapSettings = field(default_factory=ImapSettings)
    workers: WorkersSettings = field(default_factory=WorkersSettings)

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.data_dir / 'sealgate.db'}"

    def path(self, relative: str) -> Path:
        """Resolve a path setting against the data dir (absolute paths stay as they are)."""
        return self.data_dir / relative

    def replace(self, **sections: Any) -> Settings:
        """A copy with some sections' keys changed: `settings.replace(smtp={"tls_port": 0})`."""
        changes = {
            name: dataclasses.replace(getattr(self, name), **values)
            for name, values in sections.items()
        }
        return dataclasses.replace(self, **changes)


SECTIONS: dict[str, type[Any]] = {
    f.name: typing.get_type_hints(Settings)[f.name]
    for f in dataclasses.fields(Settings)
    if f.name != "data_dir"
}


def resolve_data_dir(cli_value: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path:
    raw = cli_value or env.get(f"{ENV_PREFIX}DATA_DIR") or DEFAULT_DATA_DIR
    return Path(raw).expanduser().resolve()


def load_settings(
    data_dir: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Read the TOML file (if any), then apply `SEALGATE_<SECTION>_<KEY>` overrides."""
    env = os.environ if env is None else env
    root = resolve_data_dir(data_dir, env)
    file_values: dict[str, Any] = {}
    settings_file = root / SETTINGS_FILE
    if settings_file.exists():
        try:
            file_values = tomllib.loads(settings_file.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SettingsError(f"{settings_file}: not valid TOML: {exc}") from None
        except OSError as exc:  # a directory of that name, no permission to read it
            raise SettingsError(f"{settings_file}: cannot read it ({exc.strerror})") from None
    unknown = set(file_values) - set(SECTIONS)
    if unknown:
        name = sorted(unknown)[0]
        if not isinstance(file_values[name], dict):
            # A key above the first [section] header: TOML puts it at the top level.
            owners = [f"[{s}]" for s, cls in SECTIONS.items() if name in _keys(cls)]
            where = f"it is a key of {', '.join(owners)}" if owners else "no section has it"
            raise SettingsError(
                f"{name} in {settings_file} is outside any [section] ({where}; see"
                " docs/configuration.md)"
            )
        raise SettingsError(f"unknown section [{name}] in {settings_file}")

    sections: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        raw = file_values.get(name, {})
        if not isinstance(raw, dict):
            raise SettingsError(f"[{name}] must be a table")
        sections[name] = _build_section(name, cls, raw, env)
    _refuse_unknown_env(env)
    return Settings(data_dir=root, **sections)


def _refuse_unknown_env(env: Mapping[str, str]) -> None:
    """An unknown `SEALGATE_<SECTION>_<KEY>` is an error, as an unknown key in the file is.

    Otherwise a typo (`SEALGATE_SMTP_SUBMISION_PORT`) leaves the default in place without
    a word. Only names that start with a section are checked: the secrets, the data dir
    and the test switches share the prefix but name no section.
    """
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name.removeprefix(ENV_PREFIX)
        for section in sorted(SECTIONS, key=len, reverse=True):
            if not rest.startswith(section.upper() + "_"):
                continue
            key = rest.removeprefix(section.upper() + "_").lower()
            if key not in _keys(SECTIONS[section]):
                raise SettingsError(
                    f"{name}: [{section}] has no key {key}"
                    f"{_did_you_mean(key, SECTIONS[section])} (see docs/configuration.md)"
                )
            break


def _keys(cls: type[Any]) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _did_you_mean(key: str, cls: type[Any]) -> str:
    """The section's keys a typo is close to (`submision_port`, `port`), for the error."""
    keys = _keys(cls)
    close = difflib.get_close_matches(key, keys, n=3, cutoff=0.6)
    close += [k for k in keys if k.endswith("_" + key) and k not in close][: 3 - len(close)]
    return f"; did you mean {' or '.join(close)}?" if close else ""


def _build_section(
    name: str, cls: type[Any], raw: Mapping[str, Any], env: Mapping[str, str]
) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in known:
            raise SettingsError(f"unknown setting [{name}] {key}{_did_you_mean(key, cls)}")
    values: dict[str, Any] = {}
    for key in known:
        env_key = f"{ENV_PREFIX}{name.upper()}_{key.upper()}"
        label = f"[{name}] {key}"
        if env_key in env:
            values[key] = _coerce(label + f" (from {env_key})", hints[key], env[env_key], True)
        elif key in raw:
            values[key] = _coerce(label, hints[key], _normalise_raw(label, raw[key]), False)
    section = cls(**values)
    _validate(name, section)
    return section


ProxyTrust = int | tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


def trusted_proxies(value: str) -> ProxyTrust:
    """`[portal] trusted_proxies` read: a hop count (0 trusts nobody) or the proxies' networks.

    Raises SettingsError naming the key and the entry that is neither.
    """
    text = value.strip()
    if not text:
        return 0
    if text.isdigit():
        hops = int(text)
        if hops > 10:
            raise SettingsError("[portal] trusted_proxies: at most 10 proxy hops")
        return hops
    networks = []
    for entry in (part.strip() for part in text.replace(";", ",").split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise SettingsError(
                f"[portal] trusted_proxies: {entry[:60]!r} is neither a hop count nor a network"
                " such as 127.0.0.1/32"
            ) from None
    return tuple(networks)


def _normalise_raw(label: str, value: Any) -> Any:
    """TOML spellings that a string setting also takes: `trusted_proxies = 1` or a list."""
    if label == "[portal] trusted_proxies":
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return ", ".join(value)
    return value


def _coerce(label: str, hint: Any, value: Any, from_env: bool) -> Any:
    origin = get_origin(hint)
    if origin is Literal:
        choices = get_args(hint)
        if value not in choices:
            raise SettingsError(f"{label}: must be one of {', '.join(choices)}, not {value!r}")
        return value
    if origin in (types.UnionType, typing.Union):
        hint = next(a for a in get_args(hint) if a is not type(None))
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            if from_env and str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if from_env and str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if hint is int:
            if isinstance(value, bool) or (not from_env and not isinstance(value, int)):
                raise ValueError
            return int(value)
        if hint is float:
            if isinstance(value, bool) or (not from_env and not isinstance(value, int | float)):
                raise ValueError
            number = float(value)
            if not math.isfinite(number):
                # nan passes every "< 0" check and then breaks a timer or an int();
                # inf would turn a timeout or a cache lifetime off without saying so.
                raise SettingsError(f"{label}: must be a finite number, not {value!r}")
            return number
        if hint is str:
            if not isinstance(value, str):
                raise ValueError
            return value
    except SettingsError:
        raise
    except ValueError:
        raise SettingsError(f"{label}: expected {hint.__name__}, got {value!r}") from None
    raise SettingsError(f"{label}: unsupported setting type {hint!r}")


def _validate(name: str, section: Any) -> None:
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if f.name.endswith("port") and isinstance(value, int) and not 0 <= value <= 65535:
            raise SettingsError(f"[{name}] {f.name}: {value} is not a TCP port")
        if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
            raise SettingsError(f"[{name}] {f.name}: must not be negative")
    if name == "portal":
        _validate_base_url(section.base_url)
        trusted_proxies(section.trusted_proxies)
    if name in ("smtp", "imap") and (name == "smtp" or section.hostname):
        _validate_hostname(f"[{name}] hostname", section.hostname)
    if name == "smtp" and section.max_message_size < 1024:
        raise SettingsError("[smtp] max_message_size: must be at least 1024 bytes")
    if name == "smtp" and section.min_data_rate < 1:
        raise SettingsError("[smtp] min_data_rate: must be at least 1 (bytes per second)")
    if name == "smtp":
        _validate_refusal_limit(section)
    if name == "security":
        _validate_security(section)
    if name == "passwords":
        _validate_passwords(section)
    if name == "keys":
        _validate_keys(section)
    limits_ok = ("memory://", "redis://", "rediss://", "unix://")
    if name == "limits" and not section.storage.startswith(limits_ok):
        # The URL may hold a Redis password: name the key, not the value.
        raise SettingsError("[limits] storage: must be memory:// or a redis:// URL")
    if name == "securepage":
        _validate_securepage(section)
    if name == "webmail":
        _validate_webmail(section)
    if name == "limits":
        _validate_limits(section)
    if name == "admin":
        _validate_admin(section)
    if name == "dns":
        _validate_dns(section)
    if name == "filter":
        _validate_filter(section)
    if name == "relay" and section.lease_seconds * LEASE_SHARE < section.longest_attempt():
        raise SettingsError(
            f"[relay] lease_seconds: {section.lease_seconds:g} is too short for the relay's"
            f" timeouts; {section.longest_attempt() / LEASE_SHARE:g} at least"
        )
    if name == "database" and 0 < section.dead_server_seconds < 3:
        raise SettingsError("[database] dead_server_seconds: must be 0 (off) or at least 3")
    if name == "workers" and section.max_group < 1:
        raise SettingsError("[workers] max_group: must be at least 1")
    if name == "workers" and section.backlog < 1:
        raise SettingsError("[workers] backlog: must be at least 1")


def _validate_refusal_limit(section: SmtpSettings) -> None:
    if section.inbound_refusal_limit and section.inbound_refusal_window <= 0:
        raise SettingsError("[smtp] inbound_refusal_window: must be more than 0")
    if section.inbound_refusal_clients < 1:
        raise SettingsError("[smtp] inbound_refusal_clients: must be at least 1")
    networks(section.inbound_refusal_exempt, "[smtp] inbound_refusal_exempt")


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(value: str, label: str) -> tuple[Network, ...]:
    """A list of addresses or networks ("127.0.0.1, ::1, 10.0.0.0/8") read; SettingsError
    naming `label` and the entry that is neither."""
    found: list[Network] = []
    for item in value.replace(",", " ").split():
        try:
            found.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise SettingsError(
                f"{label}: {item[:60]!r} is not an address or a network such as 10.0.0.0/8"
            ) from None
    return tuple(found)


_HOSTNAME_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def _validate_hostname(label: str, value: str) -> None:
    """A DNS name: it goes into the SMTP greeting, Received: headers, the printed DNS
    records and the self-signed certificate, where a space or a line break breaks (or
    injects into) each of them."""
    labels = value.removesuffix(".").split(".")
    if len(value) > 253 or not all(_HOSTNAME_LABEL.fullmatch(part) for part in labels):
        raise SettingsError(
            f"{label}: {value[:80]!r} is not a host name such as mail.example.org"
            " (letters, digits, hyphens and dots; IDN in its xn-- form)"
        )


def _validate_base_url(value: str) -> None:
    """Every link in a mail (secure pages, alerts, key downloads) is this URL and a path,
    and `sealgate dns` points the openpgpkey and autoconfig names at its host: without
    a host the links read https:///s/… and the records fell back to localhost, a query
    or fragment swallowed the path, a space broke the link, and a user:password in it
    went into every notification."""
    if not value.startswith(("https://", "http://")):
        raise SettingsError("[portal] base_url: must start with https:// or http://")
    parts = urllib.parse.urlsplit(value)
    if "@" in parts.netloc:  # the value holds the credentials: name the key, not the value
        raise SettingsError("[portal] base_url: must hold no user or password (user:pw@)")
    problem = f"[portal] base_url: {value[:80]!r} is not a URL such as https://mail.example.org"
    odd = next((c for c in value if not "!" <= c <= "~"), None)
    if odd is not None:
        hint = "" if odd.isascii() else "; an IDN host goes in its xn-- form"
        raise SettingsError(f"{problem} ({odd!r} in it{hint})")
    if parts.query or parts.fragment or "?" in value or "#" in value:
        raise SettingsError(f"{problem} (no ? or #: links are made by adding a path to it)")
    try:
        parts.port  # noqa: B018  (raises on a port that is none)
    except ValueError:
        raise SettingsError(f"{problem} (its port is not a number up to 65535)") from None
    host = parts.hostname or ""
    if not host:
        raise SettingsError(f"{problem} (it names no host)")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        try:
            _validate_hostname("[portal] base_url", host)
        except SettingsError:
            raise SettingsError(f"{problem} ({host[:80]!r} is not a host name)") from None


def _validate_keys(section: KeysSettings) -> None:
    for key in ("wkd_timeout", "parse_timeout", "max_key_bytes", "wkd_refresh_interval"):
        if getattr(section, key) <= 0:
            raise SettingsError(f"[keys] {key}: must be more than 0")
    if section.parse_memory_mb < 64:
        raise SettingsError("[keys] parse_memory_mb: at least 64 (the parser itself needs ~40)")


# A verified login is remembered for minutes, not hours: the cache saves Argon2 runs
# for programs that reconnect per message, it is not a session.
MAX_LOGIN_CACHE_SECONDS = 900


def _validate_passwords(section: PasswordSettings) -> None:
    for key in ("time_cost", "parallelism", "max_concurrent_hashes", "max_password_bytes"):
        if getattr(section, key) < 1:
            raise SettingsError(f"[passwords] {key}: must be at least 1")
    if section.memory_cost < 8 * section.parallelism:
        raise SettingsError("[passwords] memory_cost: at least 8 KiB per lane")
    # Every process hashes once at start (the dummy hash that evens out timing), so an
    # unbounded cost hangs every `sealgate` command, and one past Argon2's 32-bit
    # fields is a traceback. The secure page's bounds serve here too.
    if section.time_cost > SECUREPAGE_MAX_TIME_COST:
        raise SettingsError(f"[passwords] time_cost: at most {SECUREPAGE_MAX_TIME_COST}")
    if section.parallelism > SECUREPAGE_MAX_PARALLELISM:
        raise SettingsError(f"[passwords] parallelism: at most {SECUREPAGE_MAX_PARALLELISM}")
    if section.memory_cost > SECUREPAGE_MAX_MEMORY_COST:
        raise SettingsError(
            f"[passwords] memory_cost: at most {SECUREPAGE_MAX_MEMORY_COST} KiB (4 GiB)"
        )
    if section.login_cache_seconds > MAX_LOGIN_CACHE_SECONDS:
        raise SettingsError(
            f"[passwords] login_cache_seconds: at most {MAX_LOGIN_CACHE_SECONDS} (0 turns it off)"
        )


def _validate_security(section: SecuritySettings) -> None:
    for key in ("fresh_login_minutes", "lockout_threshold", "activity_days"):
        if getattr(section, key) < 1:
            raise SettingsError(f"[security] {key}: must be at least 1")
    if section.lockout_first > section.lockout_max:
        raise SettingsError("[security] lockout_first: must not exceed lockout_max")
    if not 0 <= section.known_client_days <= MAX_KNOWN_CLIENT_DAYS:
        raise SettingsError(
            f"[security] known_client_days: between 0 (off) and {MAX_KNOWN_CLIENT_DAYS}"
        )
    storage = section.lockout_storage
    if storage != "database" and not storage.startswith(("redis://", "rediss://", "unix://")):
        # The URL may hold a Redis password: name the key, not the value.
        raise SettingsError("[security] lockout_storage: must be database or a redis:// URL")


def _validate_securepage(section: SecurePageSettings) -> None:
    for key in (
        "valid_days",
        "max_failures",
        "kdf_time_cost",
        "kdf_parallelism",
        "max_concurrent_derivations",
        "unlock_minutes",
        "max_replies_per_link",
        "history_days",
    ):
        if getattr(section, key) < 1:
            raise SettingsError(f"[securepage] {key}: must be at least 1")
    if section.max_valid_days < section.valid_days:
        raise SettingsError("[securepage] max_valid_days: must not be less than valid_days")
    if section.kdf_time_cost > SECUREPAGE_MAX_TIME_COST:
        raise SettingsError(f"[securepage] kdf_time_cost: at most {SECUREPAGE_MAX_TIME_COST}")
    if section.kdf_parallelism > SECUREPAGE_MAX_PARALLELISM:
        raise SettingsError(f"[securepage] kdf_parallelism: at most {SECUREPAGE_MAX_PARALLELISM}")
    if not 8 * section.kdf_parallelism <= section.kdf_memory_cost <= SECUREPAGE_MAX_MEMORY_COST:
        raise SettingsError(
            "[securepage] kdf_memory_cost: between 8 KiB per lane and"
            f" {SECUREPAGE_MAX_MEMORY_COST} KiB"
        )
    if section.min_password_length < 1:
        raise SettingsError("[securepage] min_password_length: must be at least 1")
    if section.generated_password_length < max(section.min_password_length, 12):
        raise SettingsError(
            "[securepage] generated_password_length: at least 12 and min_password_length"
        )
    if section.purge_interval < 60:
        raise SettingsError("[securepage] purge_interval: at least 60 seconds")


def _validate_webmail(section: WebmailSettings) -> None:
    if not 1 <= section.per_page <= 200:
        raise SettingsError("[webmail] per_page: between 1 and 200")
    if section.recipient_lookup_timeout <= 0:
        raise SettingsError("[webmail] recipient_lookup_timeout: must be more than 0")


def _validate_limits(section: LimitsSettings) -> None:
    for key in ("in_flight_bytes", "decrypt_max_bytes", "decrypt_timeout"):
        if getattr(section, key) <= 0:
            raise SettingsError(f"[limits] {key}: must be more than 0")
    if section.decrypt_memory_mb < 64:
        raise SettingsError("[limits] decrypt_memory_mb: at least 64 (the parser itself needs ~40)")


def _validate_admin(section: AdminSettings) -> None:
    if not 1 <= section.per_page <= 500:
        raise SettingsError("[admin] per_page: between 1 and 500")
    for key in ("mail_log_days", "rotation_batch_size"):
        if getattr(section, key) < 1:
            raise SettingsError(f"[admin] {key}: must be at least 1")
    if section.mail_log_purge_interval < 60:
        raise SettingsError("[admin] mail_log_purge_interval: at least 60 seconds")
    if section.rotation_poll_interval <= 0 or section.rotation_stale_seconds <= 0:
        raise SettingsError("[admin] rotation_poll_interval, rotation_stale_seconds: more than 0")


def _validate_dns(section: DnsSettings) -> None:
    if not section.spf.startswith("v=spf1"):
        raise SettingsError("[dns] spf: must start with v=spf1")
    if not section.dmarc.startswith("v=DMARC1"):
        raise SettingsError("[dns] dmarc: must start with v=DMARC1")
    # A TXT record holds bytes, and SPF (RFC 7208) and DMARC (RFC 7489) records are
    # ASCII: a domain in them goes in its A-label, an address in a mailto: URI
    # percent-encoded. Printing another encoding would publish a record no one reads.
    for key in ("spf", "dmarc"):
        value: str = getattr(section, key)
        odd = next((c for c in value if not " " <= c <= "~"), None)
        if odd is not None:
            hint = " (write a domain in its xn-- form, as `sealgate dns` prints it)"
            raise SettingsError(
                f"[dns] {key}: {odd!r} at character {value.index(odd) + 1} is not printable"
                f" ASCII{hint if not odd.isascii() else ''}"
            )
    if any(c in section.spf + section.dmarc + section.mail_host for c in '"\\\r\n'):
        raise SettingsError("[dns] spf, dmarc and mail_host must not hold quotes or line breaks")
    if section.mail_host:
        _validate_mail_host(section.mail_host)


def _validate_mail_host(value: str) -> None:
    """The MX and SRV target: a host name, valid IDNA 2008 when it holds an IDN label,
    and written in one of its two forms (`sealgate dns` prints its A-label)."""
    from gateway import idn

    problem = f"[dns] mail_host: {value[:80]!r} is not a host name such as mail.example.org"
    name = value.removesuffix(".").lower()
    try:
        forms = (idn.a_label(name), idn.u_label(name))
    except idn.InvalidDomainName as exc:
        reason = str(exc).rpartition(" (")[2].rstrip(")")
        raise SettingsError(f"{problem} ({reason}; IDNA 2008)") from None
    if name not in forms:
        raise SettingsError(f"{problem} (IDNA 2008 makes it {forms[1]}: give that name)")
    try:
        _validate_hostname("[dns] mail_host", forms[0])
    except SettingsError:
        raise SettingsError(f"{problem} (letters, digits, hyphens and dots)") from None


def _validate_filter(section: FilterSettings) -> None:
    import ipaddress

    items = [i for i in section.trusted_sources.replace(",", " ").split() if i]
    if section.enabled and not items:
        raise SettingsError("[filter] trusted_sources: name at least the Postfix host's address")
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise SettingsError(f"[filter] trusted_sources: {item!r} is not an address") from None
