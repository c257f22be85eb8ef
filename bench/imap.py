"""IMAP against Dovecot: SELECT + FETCH (FLAGS ENVELOPE) of 10,000 messages, FETCH BODY[]
of 100 messages of 100 KiB, on the same mailbox loaded into both, in the same run.

sealgate runs as `sealgate serve` (throwaway data dir, SQLite, production settings),
its mailbox written straight into its tables; Debian's Dovecot (dovecot-imapd) runs
from a private config in a temp dir on a free port, the same messages as Maildir
files. Both are asked over implicit TLS by the same imaplib client, one warm-up
round each, then the median of --rounds rounds, a sealgate round and a Dovecot
round in turn so that both see the same load. Ratios are sealgate / Dovecot.

    python bench/imap.py [--messages 10000] [--big 100] [--rounds 5]
"""

from __future__ import annotations

import argparse
import imaplib
import os
import re
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import free_port
from gateway import db
from gateway.imap import folders
from gateway.models import Address, MailboxMessage, MailFolder
from gateway.runtime import Runtime
from gateway.settings import load_settings
from gateway.timeutil import utcnow

IMAP_READY = re.compile(r"imap-tls=[\d.]+:(\d+)")
LOGIN = "admin@bench.test"


def small_message(n: int) -> bytes:
    body = f"Line of text for message {n}, nothing special about it.\r\n" * 25
    return (
        f"From: Sender {n % 97} <sender{n % 97}@example.org>\r\n"
        f"To: {LOGIN}\r\nCc: team{n % 13}@example.org\r\n"
        f"Subject: Status report number {n}\r\n"
        f"Date: Fri, 27 Nov 2026 10:{n % 60:02d}:00 +0000\r\n"
        f"Message-ID: <bench-{n}@example.org>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body
    ).encode()


def big_message(n: int, size: int = 100 * 1024) -> bytes:
    head = (
        f"From: big@example.org\r\nTo: {LOGIN}\r\nSubject: Big {n}\r\n"
        f"Message-ID: <big-{n}@example.org>\r\nContent-Type: text/plain\r\n\r\n"
    ).encode()
    line = (f"{n:06d}" + "y" * 70 + "\r\n").encode()
    return head + line * ((size - len(head)) // len(line))


def env_for(data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SEALGATE_DATA_DIR": str(data_dir),
        "SEALGATE_SMTP_SUBMISSION_PORT": "0",
        "SEALGATE_SMTP_TLS_PORT": "0",
        "SEALGATE_PORTAL_PORT": "0",
        "SEALGATE_SMTP_INBOUND_PORT": "0",
        "SEALGATE_IMAP_PORT": "0",
        "SEALGATE_IMAP_TLS_PORT": "0",
    }


def load_sealgate(data_dir: Path, mailboxes: dict[str, list[bytes]]) -> None:
    """Write the messages straight into the tables, UIDs in order, as delivery would."""
    runtime = Runtime.open(load_settings(data_dir, env=env_for(data_dir)))
    now = utcnow()
    with db.transaction(runtime.sessions) as session:
        address = session.scalars(sa.select(Address).where(Address.address == LOGIN)).one()
        folders.ensure_folders(session, address.account_id, *mailboxes)
        for name, raws in mailboxes.items():
            folder = session.scalars(
                sa.select(MailFolder).where(
                    MailFolder.account_id == address.account_id, MailFolder.name == name
                )
            ).one()
            rows = [
                {
                    "address_id": address.id,
                    "folder": name,
                    "folder_id": folder.id,
                    "uid": uid,
                    "flags": "\\Seen" if uid % 3 else "",
                    "message_id": f"<{name}-{uid}@example.org>",
                    "queue_id": "",
                    "subject": f"{name} {uid}",
                    "from_addr": "sender@example.org",
                    "to_addr": LOGIN,
                    "search_text": None,
                    "envelope_from": "",
                    "date": now,
                    "received_at": now,
                    "size": len(raw),
                    "encrypted": False,
                    "raw": raw,
                }
                for uid, raw in enumerate(raws, start=1)
            ]
            session.execute(sa.insert(MailboxMessage), rows)
            folder.uid_next = len(raws) + 1
    runtime.close()


@contextmanager
def sealgate(tmp: Path, mailboxes: dict[str, list[bytes]]) -> Iterator[tuple[int, str]]:
    data_dir = tmp / "sealgate"
    env = env_for(data_dir)
    init = subprocess.run(
        [sys.executable, "-m", "sealgate", "init", "--domain", "bench.test"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    password = re.search(r"SMTP login:\s+\S+ / (\S+)", init.stdout)
    if password is None:
        raise RuntimeError("sealgate init printed no login")
    load_sealgate(data_dir, mailboxes)
    proc = subprocess.Popen(
        [sys.executable, "-m", "sealgate", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    port = None
    for line in proc.stdout:
        match = IMAP_READY.search(line)
        if match:
            port = int(match.group(1))
            break
    if port is None:
        raise RuntimeError("sealgate serve did not start IMAP")
    try:
        yield port, password.group(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
        proc.stdout.close()


@contextmanager
def dovecot(tmp: Path, mailboxes: dict[str, list[bytes]], cert: Path, key: Path) -> Iterator[int]:
    binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
    if not Path(binary).exists():
        raise SystemExit("Dovecot is missing: apt-get install dovecot-imapd")
    root = tmp / "dovecot"
    maildir = root / "mail" / "bench" / "Maildir"
    for name, raws in mailboxes.items():
        folder = maildir if name == "INBOX" else maildir / f".{name}"
        for sub in ("cur", "new", "tmp"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        for uid, raw in enumerate(raws, start=1):
            flags = "S" if uid % 3 else ""
            (
                folder / "cur" / f"{1700000000 + uid}.M{uid}P1.bench,S={len(raw)}:2,{flags}"
            ).write_bytes(raw)
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    port = free_port()
    (root / "run").mkdir()
    (root / "state").mkdir()
    config = root / "dovecot.conf"
    config.write_text(
        f"""base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 100
mail_location = maildir:{root}/mail/%u/Maildir
passdb {{
  driver = static
  args = password=bench-password
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={root}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
""",
        encoding="utf-8",
    )
    subprocess.run(["chown", "-R", "dovecot:dovecot", str(root / "mail")], check=True)
    for path in (tmp, root):
        path.chmod(0o755)
    subprocess.run([binary, "-c", str(config)], check=True)
    deadline = time.monotonic() + 20
    while not (root / "run" / "master.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    try:
        yield port
    finally:
        subprocess.run([binary, "-c", str(config), "stop"], check=False)


def client(port: int, login: str, password: str) -> imaplib.IMAP4_SSL:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # both servers use the same throwaway certificate
    imap = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx, timeout=600)
    imap.login(login, password)
    return imap


def envelopes(imap: imaplib.IMAP4_SSL, expected: int) -> Callable[[], int]:
    def run() -> int:
        typ, data = imap.select("Bench", readonly=True)
        assert typ == "OK" and int(data[0]) == expected, data
        typ, data = imap.fetch("1:*", "(FLAGS ENVELOPE)")
        assert typ == "OK"
        answers = [d for d in data if d and b"ENVELOPE" in (d[0] if isinstance(d, tuple) else d)]
        assert len(answers) == expected, len(answers)
        return sum(len(d[0] if isinstance(d, tuple) else d) for d in data)

    return run


def bodies(imap: imaplib.IMAP4_SSL, expected: int) -> Callable[[], int]:
    def run() -> int:
        typ, data = imap.select("Big", readonly=True)
        assert typ == "OK" and int(data[0]) == expected, data
        typ, data = imap.fetch(f"1:{expected}", "(BODY.PEEK[])")
        assert typ == "OK"
        literals = [d[1] for d in data if isinstance(d, tuple)]
        assert len(literals) == expected
        return sum(len(x) for x in literals)

    return run


def measure(
    ours: Callable[[], int], theirs: Callable[[], int], rounds: int
) -> tuple[tuple[float, int], tuple[float, int]]:
    """Median time and answer size of each, rounds interleaved (ours, theirs, ours, ...)
    so that both see the same load on a shared machine."""
    ours()  # warm-up: caches, indexes, the first parse
    theirs()
    times: tuple[list[float], list[float]] = ([], [])
    sizes = [0, 0]
    for _ in range(rounds):
        for i, fn in enumerate((ours, theirs)):
            start = time.perf_counter()
            sizes[i] = fn()
            times[i].append(time.perf_counter() - start)
    return (statistics.median(times[0]), sizes[0]), (statistics.median(times[1]), sizes[1])


def _load() -> str:
    """The 1-minute load average: the machine is shared, and ratios say more when it is known."""
    return f"{os.getloadavg()[0]:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--big", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    mailboxes = {
        "Bench": [small_message(n) for n in range(1, args.messages + 1)],
        "Big": [big_message(n) for n in range(1, args.big + 1)],
    }
    load_start = _load()
    results: dict[str, dict[str, float]] = {"sealgate": {}, "dovecot": {}}
    sizes: dict[str, dict[str, int]] = {"sealgate": {}, "dovecot": {}}
    with tempfile.TemporaryDirectory(prefix="sealgate-imap-bench-") as name:
        tmp = Path(name)
        with sealgate(tmp, mailboxes) as (port, password):
            data_dir = tmp / "sealgate"
            cert, key = data_dir / "tls" / "cert.pem", data_dir / "tls" / "key.pem"
            with dovecot(tmp, mailboxes, cert, key) as dport:
                ours = client(port, LOGIN, password)
                theirs = client(dport, "bench", "bench-password")
                for key_, make, count in (
                    ("envelopes", envelopes, args.messages),
                    ("bodies", bodies, args.big),
                ):
                    (our_t, our_s), (their_t, their_s) = measure(
                        make(ours, count), make(theirs, count), args.rounds
                    )
                    results["sealgate"][key_], sizes["sealgate"][key_] = our_t, our_s
                    results["dovecot"][key_], sizes["dovecot"][key_] = their_t, their_s
                ours.logout()
                theirs.logout()
    if sizes["sealgate"]["bodies"] != sizes["dovecot"]["bodies"]:
        raise SystemExit("the two servers returned different message bodies")
    print(
        f"median of {args.rounds} rounds after one warm-up each, sealgate and Dovecot rounds"
        " interleaved, implicit TLS, imaplib client"
    )
    print(f"load average at start {load_start}, at end {_load()}")
    print(f"{'measure':48} {'sealgate s':>11} {'Dovecot s':>11} {'ratio':>7}")
    labels = {
        "envelopes": f"SELECT + FETCH 1:* (FLAGS ENVELOPE), {args.messages} msgs",
        "bodies": f"SELECT + FETCH BODY.PEEK[], {args.big} x 100 KiB",
    }
    for key, label in labels.items():
        ours, theirs = results["sealgate"][key], results["dovecot"][key]
        print(f"{label:48} {ours:11.3f} {theirs:11.3f} {ours / theirs:6.1f}x")


if __name__ == "__main__":
    main()
