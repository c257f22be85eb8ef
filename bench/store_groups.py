"""CPU per message of the worker's two halves, and of a cached SMTP login, in process.

What a worker process does with each message is `prepare` (every pipeline step up to
the store) and then `groupcommit.store_group` for the messages that arrived together;
what serve does for each mail program that connects is `logins.check_for`. This bench
calls them directly, without the SMTP edge, so the CPU of each is measured alone:

- prepare: 10 KiB messages to one hosted recipient (`rcpt@bench.test`), plain and
  encrypted (the subject tag);
- store: the prepared messages in groups of 1, 2, 4 and 8 (a group shares one
  transaction, as the messages a worker receives together do);
- login: cached SMTP logins of the recipient (the verified-credential cache on, as
  by default), the read and the write transaction of each.

With `--evict-kib N`, N KiB of memory are walked between every two calls (each prepare,
each group's store), and only the calls are timed: each call then starts with caches as
cold as a worker's are in `sealgate serve`, where the edge, the client and the other
worker run on the same cores between two of its messages (docs/benchmarks.md, ninth
pass).

Each tree named by `--tree` (a checkout of another commit, e.g. made with
`git worktree add /tmp/base <commit>`) is measured in its own process in the same
run, alternating with this one, so the ratios compare code, not moments of the
machine. Figures are CPU time (user + system) of the process, median of the rounds.

    python bench/store_groups.py [--messages 1000] [--logins 1000] [--rounds 3]
        [--tree /tmp/base] [--database-url postgresql+psycopg://…] [--evict-kib 8192]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent
GROUPS = (1, 2, 4, 8)


def _measure(
    tree: Path, messages: int, logins: int, database_url: str | None, evict_kib: int
) -> dict[str, float]:
    """Run this file's `--child` part with `tree`'s code; its figures as a dict."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    args = [sys.executable, str(Path(__file__).resolve()), "--child", str(tree)]
    args += ["--messages", str(messages), "--logins", str(logins), "--evict-kib", str(evict_kib)]
    if database_url:
        args += ["--database-url", database_url]
    done = subprocess.run(args, env=env, cwd=tree, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the measurement of {tree} failed:\n{done.stderr[-3000:]}")
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def _cpu() -> float:
    return time.process_time()  # user + system of this process, finer than os.times()


class _Evictor:
    """Walks `kib` KiB of memory (bytes and small objects, as Python's own data is) so the
    next call finds the CPU caches holding something else."""

    def __init__(self, kib: int) -> None:
        self.size = kib * 1024
        self.buffer = bytearray(self.size)
        self.objects = [{"n": n} for n in range(self.size // 256)]

    def __call__(self) -> None:
        for at in range(0, self.size, 64):
            self.buffer[at] ^= 1
        sum(item["n"] for item in self.objects)


def _child(
    tree: Path, messages: int, login_count: int, database_url: str | None, evict_kib: int
) -> None:
    """In a process of its own with `tree` first on the path: set up, measure, print JSON."""
    sys.path.insert(0, str(tree))
    sys.path.insert(1, str(HERE / "bench"))
    from harness import (
        DOMAIN,
        KIB,
        RECIPIENT,
        RECIPIENT_PASSWORD,
        SENDER,
        add_recipient,
        message,
        reset_database,
        sealgate_cli,
        serve_env,
    )

    with tempfile.TemporaryDirectory() as data_dir:
        extra = {}
        if database_url:
            reset_database(database_url)
            extra["SEALGATE_DATABASE_URL"] = database_url
        env = serve_env(Path(data_dir), extra)
        sealgate_cli(env, "init", "--domain", DOMAIN)
        add_recipient(env)
        os.environ.update({k: v for k, v in env.items() if k.startswith("SEALGATE_")})

        import sqlalchemy as sa

        from gateway import groupcommit, logins
        from gateway.models import Address
        from gateway.pipeline import prepare
        from gateway.pipeline.context import ClientInfo, Sender, Submission
        from gateway.runtime import Runtime
        from gateway.settings import load_settings
        from gateway.timeutil import utcnow

        runtime = Runtime.open(load_settings(Path(data_dir)))
        with runtime.sessions() as session:
            account_id = session.scalar(
                sa.select(Address.account_id).where(Address.address == SENDER)
            )

        def submission(n: int, subject: str) -> Any:
            return Submission(
                sender=Sender(account_id=account_id, address=SENDER),
                envelope_from=SENDER,
                recipients=[RECIPIENT],
                raw=message(10 * KIB, n, subject=subject, to=RECIPIENT),
                client=ClientInfo(helo="bench.client", ip="127.0.0.1", protocol="ESMTPSA"),
                received_at=utcnow(),
            )

        evict: Callable[[], None] = _Evictor(evict_kib) if evict_kib else (lambda: None)
        figures: dict[str, float] = {}
        for kind, subject in (("plain", "bench"), ("encrypted", "[encrypt] bench")):
            for n in range(50):  # warm the caches and the database
                warm = submission(n, subject)
                prepare(runtime, warm)
                groupcommit.store_group(runtime.sessions, [warm])
            for group in GROUPS:
                batch = [submission(n, subject) for n in range(messages)]
                preparing = storing = 0.0
                for item in batch:
                    evict()
                    started = _cpu()
                    prepare(runtime, item)
                    preparing += _cpu() - started
                for first in range(0, messages, group):
                    evict()
                    started = _cpu()
                    outcomes = groupcommit.store_group(
                        runtime.sessions, batch[first : first + group]
                    )
                    storing += _cpu() - started
                    if any(outcome is not None for outcome in outcomes):
                        raise RuntimeError(f"a group failed: {outcomes}")
                figures[f"prepare {kind}"] = min(
                    figures.get(f"prepare {kind}", 1e9), preparing / messages * 1000
                )
                figures[f"store {kind}, groups of {group}"] = storing / messages * 1000
        attempt = logins.Attempt("SMTP", RECIPIENT, RECIPIENT_PASSWORD, "127.0.0.1")
        for _ in range(20):  # the first one runs Argon2 and fills the cache
            if not logins.check_for(runtime, attempt, now=utcnow()).ok:
                raise RuntimeError("the bench login was refused")
        started = _cpu()
        for _ in range(login_count):
            logins.check_for(runtime, attempt, now=utcnow())
        figures["cached SMTP login"] = (_cpu() - started) / login_count * 1000
        runtime.close()
    print(json.dumps(figures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000, help="per kind and group size")
    parser.add_argument("--logins", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tree", type=Path, action="append", default=[], help="a baseline")
    parser.add_argument("--database-url", help="PostgreSQL (emptied first) instead of SQLite")
    parser.add_argument(
        "--evict-kib", type=int, default=0, help="memory walked between two calls (0: none)"
    )
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child is not None:
        _child(
            options.child,
            options.messages,
            options.logins,
            options.database_url,
            options.evict_kib,
        )
        return
    trees = [HERE, *(t.resolve() for t in options.tree)]
    runs: dict[Path, list[dict[str, float]]] = {tree: [] for tree in trees}
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for round_ in range(options.rounds):
        order = trees[round_ % len(trees) :] + trees[: round_ % len(trees)]
        for tree in order:
            print(f"round {round_ + 1}: {tree}", file=sys.stderr, flush=True)
            runs[tree].append(
                _measure(
                    tree, options.messages, options.logins, options.database_url, options.evict_kib
                )
            )
    commit = {
        tree: subprocess.run(
            ["git", "-C", str(tree), "log", "-1", "--format=%h %s"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        for tree in trees
    }
    print(f"started {started}; {'PostgreSQL' if options.database_url else 'SQLite'}; ", end="")
    print(f"{options.messages} messages of 10 KiB per kind and group size, {options.logins} logins")
    if options.evict_kib:
        print(f"{options.evict_kib} KiB of memory walked before each call; only the calls timed")
    print(f"CPU ms per message (per login), median of {options.rounds} round(s)")
    for index, tree in enumerate(trees):
        print(f"  [{index}] {commit[tree][:72]}")
    names = list(runs[HERE][0])
    header = "".join(f"{f'[{i}]':>9}" for i in range(len(trees)))
    ratios = "".join(f"{f'[{i}]/[0]':>9}" for i in range(1, len(trees)))
    print(f"{'':<34}{header}{ratios}")
    for name in names:
        medians = [statistics.median(run[name] for run in runs[tree]) for tree in trees]
        cells = "".join(f"{m:9.3f}" for m in medians)
        cells += "".join(f"{m / medians[0]:9.2f}" for m in medians[1:])
        print(f"{name:<34}{cells}")


if __name__ == "__main__":
    main()
