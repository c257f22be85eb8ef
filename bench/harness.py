"""Shared pieces of the SMTP benchmarks: a throwaway `sealgate serve`, the baseline servers, a
STARTTLS load, and what the kernel says about a process tree (CPU time, resident memory).

The load is N concurrent clients on the STARTTLS submission port (587-like), as mail
programs submit. Either each client opens one connection, STARTTLS, AUTH once, and
sends its share of the messages over it (latency: MAIL FROM to the 250 after DATA), or
it opens a new connection for every message: connect, STARTTLS, AUTH, one message,
QUIT (latency: connect to the 250 after DATA).
"""

from __future__ import annotations

import email.utils
import os
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DOMAIN = "bench.test"
SENDER = f"admin@{DOMAIN}"
RECIPIENT = f"rcpt@{DOMAIN}"
RECIPIENT_PASSWORD = "bench-recipient-password"  # a throwaway data dir
KIB, MIB = 1024, 1024 * 1024
READY = re.compile(r"sealgate ready: (.*)")
LISTENER = re.compile(r"([\w-]+)=\S*?:(\d+)\b")


def log(text: str) -> None:
    """Progress goes to stderr, so stdout holds only the tables."""
    print(text, file=sys.stderr, flush=True)


# -- messages and the load ---------------------------------------------------------------

_LINE = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n"


def message(
    size: int, n: int, subject: str = "bench", *, to: str = SENDER, header: bool = False
) -> bytes:
    """A text message of about `size` bytes, headed as a mail program heads it.

    header: ask for encryption with `X-Sealgate-Encrypt: yes` (the subject tag is the
    other way: `subject="[encrypt] bench"`).
    """
    extra = "X-Sealgate-Encrypt: yes\r\n" if header else ""
    head = (
        f"From: Bench <{SENDER}>\r\nTo: {to}\r\nSubject: {subject} {n}\r\n"
        f"Date: {email.utils.formatdate()}\r\n"
        f"Message-ID: <bench-{n}-{time.time_ns()}@{DOMAIN}>\r\n{extra}"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    ).encode()
    return head + _LINE * max(1, (size - len(head)) // len(_LINE))


@dataclass
class Result:
    name: str
    messages: int
    seconds: float
    latencies: list[float]
    cpu_seconds: float | None = None  # of the server's process tree, during the load
    failures: list[str] = field(default_factory=list)
    client_cpu_seconds: float = 0.0  # of this (the client's) process, during the load

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile(self, p: float) -> float:
        """Milliseconds; nearest rank."""
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000

    @property
    def cpu_ms_per_message(self) -> float | None:
        if self.cpu_seconds is None or not self.latencies:
            return None
        return self.cpu_seconds / len(self.latencies) * 1000


def client_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the bench's own throwaway certificate
    return ctx


def _open(port: int, login: str, password: str, ctx: ssl.SSLContext) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", port, timeout=600)
    client.ehlo("bench.client")
    client.starttls(context=ctx)
    client.ehlo("bench.client")
    client.login(login, password)
    return client


def run_load(
    name: str,
    port: int,
    password: str,
    *,
    connections: int,
    messages: int,
    size: int,
    reconnect: bool = False,
    encrypt: str | None = None,  # None (plain), "subject" ([encrypt] tag) or "header"
    cpu_of: int | None = None,
    login: str = SENDER,
    min_seconds: float = 0.0,
) -> Result:
    """`messages` messages over `connections` concurrent STARTTLS clients; see the module doc.

    cpu_of: a pid whose process tree's CPU time during the load is recorded.
    min_seconds: go on past `messages` until the load has run this long (a fast server
    measured over a few milliseconds would be all noise).
    """
    ctx = client_context()
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    sent = [0]
    began = [0.0]  # set when the clock starts

    def take() -> int | None:
        with lock:
            n = sent[0]
            if n >= messages and time.perf_counter() - (began[0] or time.perf_counter()) >= (
                min_seconds
            ):
                return None
            sent[0] += 1
            return n

    def make(n: int) -> bytes:
        subject = "[encrypt] bench" if encrypt == "subject" else "bench"
        return message(size, n, subject, to=RECIPIENT, header=encrypt == "header")

    def send(client: smtplib.SMTP, raw: bytes) -> bool:
        try:
            client.sendmail(SENDER, [RECIPIENT], raw)
        except smtplib.SMTPException as exc:
            with lock:
                failures.append(f"{type(exc).__name__}: {exc}"[:200])
            return False
        return True

    # Persistent clients connect and log in before the clock starts: the figure is the
    # messages over open connections. One connection per message pays it each time.
    ready, go = threading.Barrier(connections + 1), threading.Event()

    def persistent() -> None:
        try:
            client = _open(port, login, password, ctx)
        except BaseException:
            ready.abort()
            raise
        with client:
            ready.wait()
            go.wait()
            while (n := take()) is not None:
                raw = make(n)
                start = time.perf_counter()
                if send(client, raw):
                    elapsed = time.perf_counter() - start
                    with lock:
                        latencies.append(elapsed)

    def one_per_message() -> None:
        ready.wait()
        go.wait()
        while (n := take()) is not None:
            raw = make(n)
            start = time.perf_counter()
            try:
                client = _open(port, login, password, ctx)
            except (OSError, smtplib.SMTPException) as exc:
                with lock:
                    failures.append(f"connect/AUTH: {type(exc).__name__}: {exc}"[:200])
                continue
            try:
                ok = send(client, raw)
                elapsed = time.perf_counter() - start
            finally:
                client.quit()
            if ok:
                with lock:
                    latencies.append(elapsed)

    threads = [
        threading.Thread(target=one_per_message if reconnect else persistent, daemon=True)
        for _ in range(connections)
    ]
    for t in threads:
        t.start()
    ready.wait()
    cpu_before = tree_cpu_seconds(cpu_of) if cpu_of else 0.0
    client_before = time.process_time()
    began[0] = last = time.perf_counter()
    go.set()
    while alive := [t for t in threads if t.is_alive()]:
        alive[0].join(1.0)
        now = time.perf_counter()
        if now - last >= 5:
            last = now
            log(f"      {name}: {len(latencies)}/{messages} after {now - began[0]:.0f} s")
    seconds = time.perf_counter() - began[0]
    cpu = tree_cpu_seconds(cpu_of) - cpu_before if cpu_of else None
    client = time.process_time() - client_before
    return Result(name, sent[0], seconds, latencies, cpu, failures, client)


# -- sealgate serve ----------------------------------------------------------------------


def serve_env(data_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Every listener on a free port, so benches and tests running side by side never clash."""
    return {
        **os.environ,
        "SEALGATE_DATA_DIR": str(data_dir),
        "SEALGATE_SMTP_SUBMISSION_PORT": "0",
        "SEALGATE_SMTP_TLS_PORT": "0",
        "SEALGATE_SMTP_INBOUND_PORT": "0",
        "SEALGATE_PORTAL_PORT": "0",
        "SEALGATE_IMAP_PORT": "0",
        "SEALGATE_IMAP_TLS_PORT": "0",
        **(extra or {}),
    }


@dataclass
class SealgateServer:
    ports: dict[str, int]  # from the ready line: smtp-starttls, smtp-tls, imap-tls, ...
    password: str  # SMTP password of SENDER
    pid: int
    data_dir: Path
    env: dict[str, str]

    @property
    def starttls_port(self) -> int:
        return self.ports["smtp-starttls"]

    @property
    def tls_port(self) -> int:
        return self.ports["smtp-tls"]

    @property
    def port(self) -> int:
        """The implicit-TLS port, under the name the older benches use."""
        return self.tls_port

    def cli(self, *args: str, stdin: str | None = None) -> str:
        """Run a `sealgate` command on this server's data dir; returns its stdout."""
        return sealgate_cli(self.env, *args, stdin=stdin)


def sealgate_cli(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "sealgate", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise RuntimeError(f"sealgate {' '.join(args)} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def reset_database(url: str) -> None:
    """Empty a PostgreSQL database for a fresh `sealgate init`: everything in it is dropped."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


@contextmanager
def sealgate_server(
    data_dir: Path,
    extra_env: dict[str, str] | None = None,
    *,
    database_url: str | None = None,
    prepare: Callable[[dict[str, str]], None] | None = None,
    serve_env_extra: dict[str, str] | None = None,
) -> Iterator[SealgateServer]:
    """`sealgate init` + `sealgate serve` on a throwaway data dir, production settings.

    database_url: PostgreSQL instead of the data dir's SQLite; the database is emptied.
    prepare: called with the environment between init and serve (to load data).
    serve_env_extra: environment for the serve process only (e.g. a profiler hook).
    """
    extra = dict(extra_env or {})
    if database_url:
        reset_database(database_url)
        extra["SEALGATE_DATABASE_URL"] = database_url
    env = serve_env(data_dir, extra)
    init = sealgate_cli(env, "init", "--domain", DOMAIN)
    password = re.search(r"SMTP login:\s+\S+ / (\S+)", init)
    if password is None:
        raise RuntimeError("sealgate init printed no SMTP login")
    if prepare is not None:
        prepare(env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sealgate", "serve"],
        env={**env, **(serve_env_extra or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    ports: dict[str, int] = {}
    for line in proc.stdout:
        ready = READY.search(line)
        if ready:
            ports = {name: int(port) for name, port in LISTENER.findall(ready.group(1))}
            break
    if not ports:
        proc.kill()
        raise RuntimeError("sealgate serve did not start")
    # Nothing reads stdout from here on: drain it so a chatty serve never blocks on the pipe.
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    try:
        yield SealgateServer(ports, password.group(1), proc.pid, data_dir, env)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def inbox_counts(server: SealgateServer, address: str = RECIPIENT) -> dict[bool, int]:
    """Messages in an address's INBOX by `encrypted`: a check that the load did what it says."""
    import sqlalchemy as sa

    url = server.env.get("SEALGATE_DATABASE_URL") or f"sqlite:///{server.data_dir}/sealgate.db"
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT m.encrypted, count(*) FROM mailbox_messages m"
                    " JOIN addresses a ON a.id = m.address_id"
                    " WHERE a.address = :address AND m.folder = 'INBOX' GROUP BY m.encrypted"
                ),
                {"address": address},
            ).all()
    finally:
        engine.dispose()
    return {bool(encrypted): count for encrypted, count in rows}


def add_recipient(env: dict[str, str]) -> None:
    """RECIPIENT as a second hosted account with its own address and key (a `prepare`)."""
    sealgate_cli(env, "user", "add", RECIPIENT, "--password-stdin", stdin=RECIPIENT_PASSWORD + "\n")
    sealgate_cli(
        env,
        "address",
        "add",
        RECIPIENT,
        "--user",
        RECIPIENT,
        "--password-stdin",
        stdin=RECIPIENT_PASSWORD + "\n",
    )


def gpg_home(root: Path, armored_public_key: str) -> Path:
    """A GnuPG home holding one public key (the recipient's, exported from sealgate)."""
    home = root / "gnupg"
    home.mkdir(mode=0o700)
    subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--quiet", "--import"],
        input=armored_public_key.encode(),
        check=True,
        capture_output=True,
    )
    return home


# -- the baseline servers (bench/baselines.py, in a process of their own) ------------------


@dataclass
class BaselineServer:
    port: int
    pid: int


@contextmanager
def baseline_server(
    kind: str, cert: Path, key: Path, *, gpg_home: Path | None = None
) -> Iterator[BaselineServer]:
    """A bare aiosmtpd server (kind "null" or "gpg") with sealgate's STARTTLS setup."""
    args = [sys.executable, str(BENCH / "baselines.py"), kind, str(cert), str(key)]
    if gpg_home is not None:
        args += ["--gpg-home", str(gpg_home), "--recipient", RECIPIENT]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.match(r"ready port=(\d+)", line)
    if match is None:
        proc.kill()
        raise RuntimeError(f"baseline server {kind} did not start: {line!r}")
    try:
        yield BaselineServer(int(match.group(1)), proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# -- a process tree, as /proc sees it ----------------------------------------------------


def tree_pids(root: int) -> list[int]:
    """root and every live descendant (the serve process and any worker processes)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU of the tree so far, children already reaped included."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in tree_pids(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime, cutime, cstime: fields 14-17 of stat(5), here 11-14 after the name.
        total += sum(int(f) for f in fields[11:15])
    return total / ticks


def _status_kib(pid: int, key: str) -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MiB."""
    return _status_kib(pid, "VmHWM") / 1024


def tree_peak_rss_mib(root: int) -> float:
    """Sum of the peaks (VmHWM) of the tree's live processes: an upper bound of its peak."""
    return sum(_status_kib(pid, "VmHWM") for pid in tree_pids(root)) / 1024


def tree_rss_mib(root: int) -> float:
    return sum(_status_kib(pid, "VmRSS") for pid in tree_pids(root)) / 1024


def _pss_kib(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    found = re.search(r"^Pss:\s+(\d+)", text, re.MULTILINE)
    return int(found.group(1)) if found else 0


def tree_pss_mib(root: int) -> float:
    """Proportional set size of the tree: pages shared by forked workers counted once."""
    return sum(_pss_kib(pid) for pid in tree_pids(root)) / 1024


class RssSampler:
    """The largest sums of the tree's resident memory (RSS, and PSS, which counts pages
    shared between the tree's processes once) seen, sampled every `interval` s."""

    def __init__(self, root: int, interval: float = 0.05) -> None:
        self.root = root
        self.interval = interval
        self.peak_mib = 0.0
        self.peak_pss_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mib = max(self.peak_mib, tree_rss_mib(self.root))
            self.peak_pss_mib = max(self.peak_pss_mib, tree_pss_mib(self.root))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f} {five:.1f} {fifteen:.1f} (1/5/15 min, {os.cpu_count()} cores)"
