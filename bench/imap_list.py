"""Event-loop time of one IMAP LIST of an account at the folder limit (MAX_FOLDERS).

Every listener of `serve` shares one event loop, so what a LIST costs on it is time
every other client waits. The IMAP server runs in this process on a loop thread of
its own (as in `serve`; throwaway data dir from `sealgate init`, SQLite). The account
holds folders up to the limit: flat, two and three levels deep, with spaces, quotes
and non-ASCII letters, each name padded to `--length` characters (by default the
longest a name may be). An imaplib client over implicit TLS asks `LIST "" "*"` and
`LSUB "" "*"` --rounds times each after one warm-up; it runs in a process of its own,
so it takes no GIL from the server. Printed per command, medians: the CPU time of the
loop thread (the event-loop time; the database query runs in a worker thread and is
not in it) and of the server's threads together, the round trip the client saw, and
the longest stall of the loop (what another client waits: loop CPU, the GIL held by
the worker thread, and the machine's other load). CPU times are the figures to
compare; the others move with the load of the machine.

    python bench/imap_list.py [--rounds 20] [--length 200]
"""

from __future__ import annotations

import argparse
import asyncio
import imaplib
import re
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.imap import LOGIN, env_for
from gateway import db
from gateway.imap import folders
from gateway.imap.notify import Notifier
from gateway.imap.server import ImapServer
from gateway.models import Address
from gateway.runtime import Runtime
from gateway.settings import load_settings


def folder_names(length: int, limit: int = folders.MAX_FOLDERS) -> list[str]:
    """Names whose LIST shows exactly `limit` entries, INBOX and the special folders
    included: a third flat, the rest two and three levels deep, some with spaces,
    quotes or non-ASCII letters (each of those written differently on the wire), each
    padded to `length` characters in its last level."""
    names: list[str] = []
    shown = set(folders.SPECIAL_FOLDERS)
    n = 0
    while True:
        kind = n % 6
        if kind in (0, 1):
            name = f"Folder {n}" if kind else f"folder-{n}"
        elif kind == 2:
            name = f"Projects/{n // 60}/Client {n}"
        elif kind == 3:
            name = f"Archiv/Entwürfe {n // 30}/Bericht-{n}"
        elif kind == 4:
            name = f'Lists/"quoted" {n}'
        else:
            name = f"日本語/{n}"
        name += "x" * (length - len(name))
        wanted = folders.listed_names([*names, name]) | shown
        if len(wanted) > limit:
            return names
        names.append(name)
        n += 1


class StallMeter:
    """The longest time the loop could not run a ready task (a 1 ms ticker's lateness):
    what another client waits, loop CPU and the GIL held by worker threads together."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._tick())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def reset(self) -> float:
        longest, self.longest = self.longest, 0.0
        return longest

    async def _tick(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            self.longest = max(self.longest, time.perf_counter() - before - 0.001)


def thread_cpu(thread: threading.Thread) -> float:
    assert thread.ident is not None
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def client(port: int, password: str, cafile: str) -> None:
    """The imaplib client, in a process of its own so that it takes no GIL from the
    server: reads a command per line ("LIST", "LSUB") from stdin, runs it, prints
    "<seconds> <entries> <bytes>"."""
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False
    imap = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx)
    imap.login(LOGIN, password)
    print("ready", flush=True)
    for line in sys.stdin:
        command = line.strip()
        before = time.perf_counter()
        typ, data = imap._simple_command(command, '""', '"*"')
        elapsed = time.perf_counter() - before
        assert typ == "OK", (typ, data)
        lines = [x for x in imap.untagged_responses.pop(command, []) if isinstance(x, bytes)]
        print(elapsed, len(lines), sum(len(x) + 2 for x in lines), flush=True)
    imap.logout()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument(
        "--length", type=int, default=folders.MAX_NAME_LENGTH, help="characters per name"
    )
    parser.add_argument("--client", nargs=3, metavar=("PORT", "PASSWORD", "CAFILE"))
    args = parser.parse_args()
    if args.client:
        client(int(args.client[0]), args.client[1], args.client[2])
        return
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "sealgate"
        env = env_for(data_dir)
        init = subprocess.run(
            [sys.executable, "-m", "sealgate", "init", "--domain", "bench.test"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        found = re.search(r"SMTP login:\s+\S+ / (\S+)", init.stdout)
        if found is None:
            raise SystemExit("sealgate init printed no login")
        runtime = Runtime.open(load_settings(data_dir, env=env))
        names = folder_names(args.length)
        with db.transaction(runtime.sessions) as session:
            address = session.scalars(sa.select(Address).where(Address.address == LOGIN)).one()
            folders.ensure_folders(session, address.account_id, *names)
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()

        def run(coro: Any) -> Any:
            return asyncio.run_coroutine_threadsafe(coro, loop).result(120)

        server = ImapServer(runtime, Notifier())
        run(server.start())
        meter = StallMeter()
        run(meter.start())
        cafile = str(data_dir / "tls" / "cert.pem")
        peer = subprocess.Popen(
            [sys.executable, __file__, "--client", str(server.tls_port), found.group(1), cafile],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert peer.stdin is not None and peer.stdout is not None
        try:
            assert peer.stdout.readline().strip() == "ready"
            print(f"folders shown by LIST: {len(folders.listed_names(names)) + 4}")
            for command in ("LIST", "LSUB"):
                cpu: list[float] = []
                wall: list[float] = []
                stalls: list[float] = []
                process: list[float] = []
                for index in range(args.rounds + 1):
                    run(meter.reset())
                    before_cpu, before_process = thread_cpu(thread), time.process_time()
                    peer.stdin.write(command + "\n")
                    peer.stdin.flush()
                    elapsed, entries, size = peer.stdout.readline().split()
                    after_cpu, after_process = thread_cpu(thread), time.process_time()
                    if index:  # the first is the warm-up
                        cpu.append(after_cpu - before_cpu)
                        wall.append(float(elapsed))
                        stalls.append(run(meter.reset()))
                        process.append(after_process - before_process)
                print(
                    f"{command}: {entries} entries, {size} bytes; event-loop CPU median "
                    f"{statistics.median(cpu) * 1000:.1f} ms (min {min(cpu) * 1000:.1f}), "
                    f"server CPU (all threads) {statistics.median(process) * 1000:.1f} ms, "
                    f"round trip median {statistics.median(wall) * 1000:.1f} ms, "
                    f"longest loop stall median {statistics.median(stalls) * 1000:.1f} ms"
                )
        finally:
            peer.stdin.close()
            peer.wait(30)
            run(meter.stop())
            run(server.stop())
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()
            runtime.close()


if __name__ == "__main__":
    main()
