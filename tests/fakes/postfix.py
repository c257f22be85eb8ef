"""Debian's real Postfix, run privately for one test: own config, queue and ports.

Nothing of the system's Postfix is used or touched: `postfix -c DIR start` reads
`DIR/main.cf` and `DIR/master.cf`, whose queue_directory, data_directory and
listeners (on free ports of 127.0.0.1, chroot off) all live in a temp dir, and
`postfix -c DIR stop` ends it. A system Postfix keeps running on its own ports.

The package is installed when missing (root and apt-get needed, as on CI, where
.ci/run installs it first), preseeded to "No configuration" so apt-get does not
ask. For SASL on the submission service a private Dovecot (installed already for
the IMAP benchmarks; installed here too when missing) answers Postfix's auth socket
from a passwd-file.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def ensure_installed() -> None:
    """Install Debian's postfix (and dovecot-core, for SASL) if missing, as .ci/run does."""
    missing = [
        package
        for package, program in (("postfix", "/usr/lib/postfix/sbin/master"),
                                 ("dovecot-core", "/usr/sbin/dovecot"))
        if not Path(program).exists()
    ]  # fmt: skip
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise RuntimeError(f"{', '.join(missing)} not installed and cannot be (needs root, apt)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(
        ["debconf-set-selections"],
        input=b"postfix postfix/main_mailer_type select No configuration\n",
        check=True,
        env=env,
    )
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
        check=True,
        env=env,
        capture_output=True,
        timeout=900,
    )


def private_root(prefix: str) -> Path:
    """A fresh directory under /tmp that the postfix and dovecot users can enter."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


@dataclass
class PrivatePostfix:
    """One private Postfix instance. `main` and `services` become main.cf and master.cf."""

    root: Path
    main: dict[str, str]
    services: list[str]
    ports: list[int] = field(default_factory=list)

    @property
    def config_dir(self) -> Path:
        return self.root / "etc"

    @property
    def log(self) -> str:
        path = self.root / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> None:
        # The postfix user must reach into it (pytest's tmp_path lies under a 0700 dir).
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        for sub in ("etc", "spool", "data"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        shutil.chown(self.root / "data", "postfix", "postfix")
        base = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.root / "spool"),
            "data_directory": str(self.root / "data"),
            "meta_directory": "/etc/postfix",
            "daemon_directory": "/usr/lib/postfix/sbin",
            "shlib_directory": "/usr/lib/postfix",
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "maillog_file": str(self.root / "maillog"),
            "maillog_file_prefixes": str(self.root),
            "mydestination": "",
            "local_transport": "error:5.1.1 no local delivery here",
            "alias_maps": "",
            "alias_database": "",
            "biff": "no",
            "smtp_dns_support_level": "disabled",
            "disable_dns_lookups": "yes",
            "smtpd_banner": "$myhostname ESMTP (private test Postfix)",
            # A test wants answers in seconds, not the production back-off.
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
        }
        base.update(self.main)
        (self.config_dir / "main.cf").write_text(
            "".join(f"{key} = {value}\n" for key, value in base.items())
        )
        (self.config_dir / "master.cf").write_text(DAEMONS + "\n".join(self.services) + "\n")
        self._postfix("check")
        self._postfix("start")
        for port in self.ports:
            wait_for_port(port)

    def stop(self) -> None:
        self._postfix("stop", check=False)
        # `postfix stop` returns before master is gone; wait so the ports and spool are free.
        pid_file = self.root / "spool" / "pid" / "master.pid"
        deadline = time.monotonic() + 15
        while pid_file.exists() and time.monotonic() < deadline:
            try:
                pid = int(pid_file.read_text().split()[0])
                os.kill(pid, 0)
            except (ValueError, ProcessLookupError, IndexError):
                break
            time.sleep(0.1)

    def flush(self) -> None:
        """Ask the queue manager to try deferred mail now."""
        self._postfix("flush", check=False)

    def _postfix(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["postfix", "-c", str(self.config_dir), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"postfix {' '.join(args)} failed: {result.stdout}{result.stderr}\n{self.log}"
            )
        return result


@dataclass
class PrivateDovecot:
    """A Dovecot that only serves SASL to Postfix (no IMAP), from a passwd-file."""

    root: Path
    users: dict[str, str]

    @property
    def socket(self) -> Path:
        return self.root / "run" / "auth-postfix"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        run = self.root / "run"
        run.mkdir(parents=True, exist_ok=True)
        passwd = self.root / "passwd"
        passwd.write_text(
            "".join(f"{user}:{{PLAIN}}{password}\n" for user, password in self.users.items())
        )
        passwd.chmod(0o640)
        shutil.chown(passwd, "root", "dovecot")
        config = self.root / "dovecot.conf"
        config.write_text(
            f"""\
instance_name = sealgate-test-{os.getpid()}
base_dir = {run}
state_dir = {self.root / "state"}
log_path = {self.root / "dovecot.log"}
protocols =
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = static
  args = uid=65534 gid=65534 home=/nonexistent
}}
service auth {{
  unix_listener auth-postfix {{
    mode = 0666
  }}
}}
service anvil {{
  chroot =
}}
"""
        )
        (self.root / "state").mkdir(exist_ok=True)
        # dovecot forks into the background; its children must not hold a pipe of ours.
        subprocess.run(
            ["dovecot", "-c", str(config)],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        deadline = time.monotonic() + 15
        while not self.socket.exists():
            if time.monotonic() > deadline:
                log = (self.root / "dovecot.log").read_text(errors="replace")
                raise TimeoutError(f"dovecot's auth socket did not appear:\n{log}")
            time.sleep(0.1)

    def stop(self) -> None:
        subprocess.run(
            ["doveadm", "-c", str(self.root / "dovecot.conf"), "stop"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )
