"""`sealgate serve` as a real process: clean stop on SIGTERM, and no lost mail on SIGKILL."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from pathlib import Path

import pytest
import sqlalchemy as sa
import trustme

from gateway import db
from gateway.models import MailboxMessage, QueueItem
from gateway.runtime import Runtime
from gateway.settings import Settings
from sealgate.cli.serve import _listen_failure
from tests.fakes.smarthost import FakeSmarthost
from tests.gateway.test_passthrough import strip_gateway_signatures
from tests.processes import children, wait_gone

ALICE, BOB, CAROL = "alice@example.test", "bob@example.test", "carol@elsewhere.example"
READY = re.compile(
    r"sealgate ready: smtp-starttls=([\d.]+):(\d+) smtp-tls=[\d.]+:(\d+) portal=(\S+)"
)


@dataclass
class ServeProcess:
    proc: subprocess.Popen[str]
    submission_port: int
    tls_port: int
    portal_url: str
    output: list[str]
    drain: threading.Thread | None = None

    def wait_and_close(self) -> int:
        """Wait for the exit, finish reading its output, close the pipe."""
        code = self.proc.wait(30)
        if self.drain is not None:
            self.drain.join(30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code


def start_serve(env: dict[str, str], *, umask: int = -1) -> ServeProcess:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sealgate", "serve"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        umask=umask,
    )
    assert proc.stdout is not None
    output: list[str] = []
    for line in proc.stdout:
        output.append(line)
        match = READY.search(line)
        if match:
            break
    else:
        raise AssertionError("serve exited before it was ready:\n" + "".join(output))
    # Keep draining the pipe so the server never blocks on a full stdout.
    drain = threading.Thread(target=lambda: output.extend(proc.stdout or []), daemon=True)
    drain.start()
    return ServeProcess(
        proc, int(match.group(2)), int(match.group(3)), match.group(4), output, drain
    )


@pytest.fixture
def serve_env(
    test_env: dict[str, str], runtime: Runtime, mail_users: dict[str, str]
) -> dict[str, str]:
    """The environment for a `sealgate serve` on this test's (initialised) data dir."""
    return test_env


@contextlib.contextmanager
def running(env: dict[str, str]) -> Iterator[ServeProcess]:
    server = start_serve(env)
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
        server.wait_and_close()


def make_message(n: int) -> bytes:
    return (
        f"From: {ALICE}\r\nTo: {BOB}, {CAROL}\r\nSubject: crash-{n}\r\n"
        f"Message-ID: <crash-{n}@example.test>\r\n\r\nmessage number {n}\r\n"
    ).encode()


def refused_start(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`sealgate serve` that must stop at once: exit 1, one message, no traceback, and
    nothing said to be listening or ready."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "sealgate", "serve"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"serve hung instead of stopping: {exc.stderr!r}") from None
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "sealgate ready" not in done.stdout
    return done


def test_sigterm_stops_cleanly(
    serve_env: dict[str, str], mail_users: dict[str, str], client_ssl_context: ssl.SSLContext
) -> None:
    env = {**serve_env, "SEALGATE_WORKERS_PROCESSES": "2"}
    with running(env) as server:
        workers = children(server.proc.pid)
        assert len(workers) >= 2, "serve did not start its worker processes"
        with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=30) as client:
            client.starttls(context=client_ssl_context)
            client.login(ALICE, mail_users[ALICE])
            assert client.sendmail(ALICE, [BOB], make_message(1)) == {}
        server.proc.send_signal(signal.SIGTERM)
        assert server.wait_and_close() == 0
    assert any("stopped" in line for line in server.output), server.output
    assert wait_gone(workers) == [], "worker processes outlived serve"


NO_SMARTHOST = "no smarthost configured"


def test_the_no_smarthost_warning_comes_once_before_ready(serve_env: dict[str, str]) -> None:
    """Said by the relay task, it came after "ready", and after "stopping" when a stop
    came first; an admin read it as said again at shutdown."""
    with running(serve_env) as server:
        server.proc.send_signal(signal.SIGTERM)
        assert server.wait_and_close() == 0
    warnings = [n for n, line in enumerate(server.output) if NO_SMARTHOST in line]
    [ready] = [n for n, line in enumerate(server.output) if "sealgate ready" in line]
    assert len(warnings) == 1, server.output
    assert warnings[0] < ready, server.output


CLIENTS = 4


@pytest.mark.parametrize("processes", ["2", "0"], ids=["worker-pool", "in-process"])
def test_sigkill_during_200_submissions_loses_nothing(
    processes: str,
    serve_env: dict[str, str],
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    runtime: Runtime,
) -> None:
    """Four clients at once (so commits are shared) into worker processes or threads."""
    env = {**serve_env, "SEALGATE_WORKERS_PROCESSES": processes}
    acked: dict[int, str] = {}
    kill_after = 60
    server = start_serve(env)
    workers = children(server.proc.pid)
    killed = threading.Event()
    errors: list[BaseException] = []

    def submit_all(numbers: list[int], port: int, left: list[int]) -> None:
        """Submit `numbers` in order; on the kill, what was never tried goes to `left`."""
        i = 0
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
                client.starttls(context=client_ssl_context)
                client.login(ALICE, mail_users[ALICE])
                for i, n in enumerate(numbers):  # noqa: B007  (read after the loop)
                    client.mail(ALICE)
                    client.rcpt(BOB)
                    client.rcpt(CAROL)
                    code, reply = client.data(make_message(n))
                    assert code == 250, reply
                    acked[n] = reply.decode().rsplit(" ", 1)[1]
                    if len(acked) >= kill_after and not killed.is_set():
                        killed.set()
                        # Kill while the clients keep going: messages are in flight.
                        threading.Timer(0.01, server.proc.kill).start()
        except (OSError, smtplib.SMTPException, AssertionError) as exc:
            if not killed.is_set():
                errors.append(exc)
            # The message in flight at the kill may or may not be stored: not sent again.
            left.extend(numbers[i + 1 :])

    def in_parallel(shares: list[list[int]], port: int) -> list[int]:
        left: list[int] = []
        threads = [
            threading.Thread(target=submit_all, args=(share, port, left)) for share in shares
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        return sorted(left)

    left = in_parallel(
        [list(range(k, 200, CLIENTS)) for k in range(CLIENTS)], server.submission_port
    )
    assert errors == []
    assert server.wait_and_close() == -signal.SIGKILL
    assert kill_after <= len(acked) < 200
    # The workers see serve die and exit: nothing holds the database for the restart.
    assert wait_gone(workers) == [], "worker processes outlived a killed serve"

    with running(env) as restarted:
        assert (
            in_parallel([left[k::CLIENTS] for k in range(CLIENTS)], restarted.submission_port) == []
        )
        restarted.proc.send_signal(signal.SIGTERM)
        assert restarted.wait_and_close() == 0
    assert errors == []

    with db.transaction(runtime.sessions) as session:
        inbox = session.scalars(sa.select(MailboxMessage)).all()
        queued = session.scalars(sa.select(QueueItem)).all()
    parser = BytesHeaderParser()
    in_mailbox = Counter(str(parser.parsebytes(m.raw)["Subject"]) for m in inbox)
    in_queue = Counter(str(parser.parsebytes(q.raw)["Subject"]) for q in queued)
    for n, queue_id in acked.items():
        assert in_mailbox[f"crash-{n}"] == 1, (
            f"message {n} (queue id {queue_id}) not delivered once"
        )
        assert in_queue[f"crash-{n}"] == 1, f"message {n} (queue id {queue_id}) not queued once"
    # A message that never got its 250 may or may not be there, but never twice.
    assert max(in_mailbox.values()) == 1 and max(in_queue.values()) == 1
    # Every message is in both places or in neither: one transaction per message.
    assert set(in_mailbox) == set(in_queue)
    # Only the messages in flight at the kill (one per client) may lack a 250.
    assert len(acked) >= 200 - CLIENTS


def test_external_recipient_reaches_the_smarthost_byte_for_byte(
    serve_env: dict[str, str],
    mail_users: dict[str, str],
    client_ssl_context: ssl.SSLContext,
    smarthost: FakeSmarthost,
) -> None:
    env = {
        **serve_env,
        "SEALGATE_RELAY_HOST": smarthost.host,
        "SEALGATE_RELAY_PORT": str(smarthost.port),
        "SEALGATE_RELAY_SECURITY": "starttls",
        "SEALGATE_RELAY_CA_FILE": str(smarthost.ca_file),
        "SEALGATE_RELAY_POLL_INTERVAL": "0.05",
    }
    raw = (
        f"From: {ALICE}\r\nTo: {CAROL}\r\nSubject: =?utf-8?q?Gr=C3=BCsse?=\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\nGrüsse, Carol.\r\n.leading dot\r\n"
    ).encode()
    with running(env) as server:
        with smtplib.SMTP_SSL(
            "127.0.0.1", server.tls_port, timeout=30, context=client_ssl_context
        ) as client:
            client.login(ALICE, mail_users[ALICE])
            client.mail(ALICE, ["BODY=8BITMIME"])
            client.rcpt(CAROL)
            code, reply = client.data(raw)
            assert code == 250
            queue_id = reply.decode().rsplit(" ", 1)[1]
        [relayed] = smarthost.wait_for(1, timeout=30)
        server.proc.send_signal(signal.SIGTERM)
        assert server.wait_and_close() == 0
    assert relayed.mail_from == ALICE and relayed.rcpt_tos == (CAROL,)
    assert relayed.tls
    # The relay signs with the domain's two DKIM keys in front of everything else.
    content = strip_gateway_signatures(relayed.content)
    received, sep, rest = content.partition(b"\r\nFrom: ")
    assert sep and b"From: " + rest == raw
    assert received.startswith(b"Received: from ")
    assert f"id {queue_id}".encode() in received and f"for <{CAROL}>".encode() in received
    assert content.count(b"Received:") == 1


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        (
            {"SEALGATE_PORTAL_LOGIN_RATE_LIMIT": "garbage"},
            "configuration error: [portal] login_rate_limit",
        ),
        (
            {"SEALGATE_PORTAL_RATELIMIT_STORAGE": "garbage://x"},
            "configuration error: [portal] ratelimit_storage",
        ),
        ({"SEALGATE_SESSION_KEY": "zz"}, "SEALGATE_SESSION_KEY must be"),
    ],
)
def test_a_setting_the_portal_refuses_stops_serve_with_one_message(
    serve_env: dict[str, str], setting: dict[str, str], expected: str
) -> None:
    """The portal checks these only when it is built, after the worker processes have
    started: serve must stop them and exit with the message, not hang on a traceback."""
    env = {**serve_env, "SEALGATE_WORKERS_PROCESSES": "1", **setting}
    done = refused_start(env)
    assert expected in done.stderr


@pytest.mark.parametrize("broken", ["cert", "key"])
def test_a_tls_pair_that_does_not_load_stops_serve_before_it_listens(
    serve_env: dict[str, str], settings: Settings, tls_ca: trustme.CA, broken: str
) -> None:
    cert = settings.path(settings.smtp.tls_cert)
    key = settings.path(settings.smtp.tls_key)
    if broken == "cert":
        cert.write_text("half-written\n")
        expected = f"{cert} holds no PEM certificate"
    else:
        tls_ca.issue_cert("localhost").private_key_pem.write_to_path(str(key))
        expected = f"{key} is not the private key of {cert}"
    env = {**serve_env, "SEALGATE_WORKERS_PROCESSES": "1"}
    done = refused_start(env)
    assert f"Error: TLS certificate not usable: {expected}" in done.stderr
    assert "listening" not in done.stderr


@pytest.mark.parametrize(
    "failure",
    [
        # aiosmtpd's error, as the service user without the unit's capability gets it
        OSError(
            errno.EACCES,
            "error while attempting to bind on address ('0.0.0.0', 25): permission denied",
        ),
        # cheroot's, for [portal] port = 443
        OSError("No socket could be created -- (('0.0.0.0', 443): [Errno 13] Permission denied)"),
    ],
)
def test_a_privileged_port_refused_says_what_grants_it(failure: OSError) -> None:
    """`sealgate serve` run by hand as the service user on 25, 465, 587 or 443 got a bare
    "permission denied"; the admin is pointed to the capability the unit grants."""
    reason = _listen_failure(failure)
    assert "ermission denied (a port below 1024 needs CAP_NET_BIND_SERVICE" in reason
    assert "No socket could be created" not in reason


def test_a_tls_path_that_is_a_directory_is_named_as_such(
    serve_env: dict[str, str], tmp_path: Path
) -> None:
    """It was called missing, and the admin looked for a file that was there."""
    (tmp_path / "privkey.pem").mkdir()
    done = refused_start({**serve_env, "SEALGATE_SMTP_TLS_KEY": str(tmp_path / "privkey.pem")})
    assert f"Error: TLS file {tmp_path / 'privkey.pem'} is not a file" in done.stderr
    done = refused_start({**serve_env, "SEALGATE_SMTP_TLS_KEY": str(tmp_path / "none.pem")})
    assert f"Error: TLS file {tmp_path / 'none.pem'} is missing" in done.stderr
    # What serve meets after a restore onto a new machine (backups hold no certificate).
    assert "or run `sealgate init`, which makes a self-signed pair" in done.stderr


def test_a_master_key_ring_of_another_installation_is_refused(
    serve_env: dict[str, str], mail_users: dict[str, str]
) -> None:
    """Same version number, other key (what `sealgate init` on a fresh machine makes
    before a restore): serve would answer every encrypted message 451 and wrap new
    keys under a ring the real one can never open."""
    from keystore.masterkey import MasterKeyRing

    env = {**serve_env, "SEALGATE_MASTER_KEYS": MasterKeyRing.generate().to_json()}
    done = refused_start(env)
    assert "does not open the keys the database holds under its version 1" in done.stderr
    assert "listening" not in done.stderr


def test_another_ring_is_refused_when_the_database_holds_only_dkim_keys(
    test_env: dict[str, str], runtime: Runtime
) -> None:
    """A domain but no address yet: the DKIM keys sealed under the ring are what tells
    (gateway.master_records.check_ring); serve used to start, and seal under the
    wrong ring."""
    from gateway import accounts, db
    from keystore.masterkey import MasterKeyRing

    with db.transaction(runtime.sessions) as session:
        accounts.add_domain(session, "example.test", actor="test")
    env = {**test_env, "SEALGATE_MASTER_KEYS": MasterKeyRing.generate().to_json()}
    done = refused_start(env)
    assert "does not open the keys the database holds under its version 1" in done.stderr
    assert "listening" not in done.stderr


def test_a_relay_ca_file_that_does_not_load_stops_serve_before_it_listens(
    serve_env: dict[str, str], tmp_path: Path
) -> None:
    """It used to print "sealgate ready", then stop with a traceback in the log."""
    missing = tmp_path / "no-such-ca.pem"
    env = {**serve_env, "SEALGATE_RELAY_CA_FILE": str(missing)}
    done = refused_start(env)
    assert f"configuration error: [relay] ca_file: cannot load {missing}" in done.stderr


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        (
            {"SEALGATE_SMTP_LISTEN": "192.0.2.1"},
            "[smtp] listen = '192.0.2.1'",
        ),
        (
            {"SEALGATE_PORTAL_HOST": "192.0.2.1"},
            "[portal] host = '192.0.2.1'",
        ),
    ],
)
def test_an_address_serve_cannot_listen_on_is_named_with_its_setting(
    serve_env: dict[str, str], setting: dict[str, str], expected: str
) -> None:
    env = {**serve_env, "SEALGATE_WORKERS_PROCESSES": "1", **setting}
    done = refused_start(env)
    assert "cannot listen" in done.stderr and expected in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("port_setting", "more", "where"),
    [
        ("SEALGATE_SMTP_SUBMISSION_PORT", {}, "[smtp] listen = '127.0.0.1'"),
        # cheroot's own words were the whole message here: "No socket could be created
        # -- (('127.0.0.1', 8080): [Errno 98] Address already in use)", without the hint.
        ("SEALGATE_PORTAL_PORT", {}, "[portal] host = '127.0.0.1'"),
        ("SEALGATE_METRICS_PORT", {"SEALGATE_METRICS_ENABLED": "true"}, "[metrics] host"),
    ],
)
def test_a_port_taken_by_another_program_says_so(
    serve_env: dict[str, str], port_setting: str, more: dict[str, str], where: str
) -> None:
    """A second `serve` on the same ports (or any program there) used to get the bare
    "Address already in use": the new admin did not learn what to look for."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **serve_env,
            "SEALGATE_WORKERS_PROCESSES": "1",
            "SEALGATE_SMTP_LISTEN": "127.0.0.1",
            port_setting: str(port),
            **more,
        }
        done = refused_start(env)
    [line] = [x for x in done.stderr.splitlines() if x.startswith("Error:")]
    assert f"cannot listen ({where}" in line and str(port) in line, done.stderr
    assert "perhaps another `sealgate serve`, listens there" in line, done.stderr
    assert "No socket could be created" not in line
