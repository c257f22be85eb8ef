"""Where `submit` spends its time: per-step milliseconds of in-process submissions.

A throwaway data dir (`sealgate init`, production settings; SQLite unless
`--database-url` names a PostgreSQL database, which is emptied first), one
hosted recipient (the sender itself, as in bench/smtp_throughput.py), 10 KiB
messages, plain and encrypted (the subject tag). For each kind:

- wall time per message without a profiler (the figure to compare runs by);
- under cProfile, the time per message of each call `submit` makes (its steps,
  the lookups and the transaction enters/exits, where the commit happens), and
  the self time spent in SQLAlchemy and the database driver, in the OpenPGP
  libraries and in the rest (the profiler's own overhead inflates Python-heavy
  code, so compare these shares between runs, not with the wall time).

    python bench/profile_submit.py [--messages 200] [--size 10240] [--database-url URL]
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import os
import pstats
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

# The bench folder has a keystore.py of its own: the package must win, so the folder goes last.
BENCH = Path(__file__).resolve().parent
sys.path[:] = [str(BENCH.parent)] + [p for p in sys.path if Path(p or ".").resolve() != BENCH]
sys.path.append(str(BENCH))

from harness import SENDER, message  # noqa: E402

# Self time of functions whose file matches one of these, by group.
GROUPS = (
    ("SQLAlchemy + driver", re.compile(r"/sqlalchemy/|sqlite3|psycopg")),
    ("OpenPGP (pgpy, cryptography, sequoia)", re.compile(r"/pgpy/|/cryptography/|sequoia")),
    ("email parsing (stdlib email)", re.compile(r"/email/")),
)


def _env(data_dir: Path, database_url: str | None) -> dict[str, str]:
    env = {
        **os.environ,
        "SEALGATE_DATA_DIR": str(data_dir),
        "SEALGATE_SMTP_SUBMISSION_PORT": "0",
        "SEALGATE_SMTP_TLS_PORT": "0",
        "SEALGATE_PORTAL_PORT": "0",
        "SEALGATE_SMTP_INBOUND_PORT": "0",
    }
    if database_url:
        env["SEALGATE_DATABASE_URL"] = database_url
    return env


def _empty_database(url: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


def _submission(raw: bytes, account_id: int) -> Any:
    from gateway.pipeline import ClientInfo, Sender, Submission

    return Submission(
        sender=Sender(account_id=account_id, address=SENDER),
        envelope_from=SENDER,
        recipients=[SENDER],
        raw=raw,
        client=ClientInfo(helo="bench.client", ip="127.0.0.1", protocol="ESMTPSA"),
        received_at=dt.datetime.now(dt.UTC),
    )


def _label(func: tuple[str, int, str]) -> str:
    filename, _line, name = func
    if filename == "~":
        return name
    parts = Path(filename).parts
    where = "/".join(parts[parts.index("gateway") :]) if "gateway" in parts else Path(filename).name
    return f"{name} ({where})"


def _per_step(
    stats: pstats.Stats, messages: int, caller: str = "submit"
) -> list[tuple[str, float]]:
    """Time in each direct callee of `caller`, in ms per message, biggest first."""
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    here = "pipeline/__init__.py" if caller == "submit" else "gateway/"
    submit = next(k for k in raw if k[2] == caller and here in k[0])
    steps: dict[str, float] = defaultdict(float)
    for func, (_cc, _nc, _tt, _ct, callers) in raw.items():
        edge = callers.get(submit)
        if edge is not None:
            steps[_label(func)] += edge[3]
    total = raw[submit][3]
    steps[f"({caller}'s own lines)"] = total - sum(steps.values())
    ordered = sorted(steps.items(), key=lambda kv: -kv[1])
    return [(f"{caller}, total", total * 1000 / messages)] + [
        (name, seconds * 1000 / messages) for name, seconds in ordered
    ]


def _by_group(stats: pstats.Stats, messages: int) -> list[tuple[str, float]]:
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    groups: dict[str, float] = defaultdict(float)
    for (filename, _line, name), (_cc, _nc, tottime, _ct, _callers) in raw.items():
        where = filename if filename != "~" else name
        group = next((g for g, pattern in GROUPS if pattern.search(where)), "everything else")
        groups[group] += tottime
    return [(g, groups[g] * 1000 / messages) for g, _ in GROUPS] + [
        ("everything else", groups["everything else"] * 1000 / messages)
    ]


def run(
    kind: str, runtime: Any, account_id: int, messages: int, size: int, detail: list[str]
) -> None:
    from gateway.pipeline import submit

    subject = "[encrypt] bench" if kind == "encrypted" else "bench"
    for i in range(10):  # warm caches, import lazily loaded modules
        submit(runtime, _submission(message(size, i, subject), account_id))

    raws = [message(size, i, subject) for i in range(messages)]
    started = time.perf_counter()
    for raw in raws:
        submit(runtime, _submission(raw, account_id))
    wall = (time.perf_counter() - started) * 1000 / messages

    profiler = cProfile.Profile()
    profiler.enable()
    for raw in raws:
        submit(runtime, _submission(raw, account_id))
    profiler.disable()
    stats = pstats.Stats(profiler)

    print(f"\n{kind}: {messages} messages of {size} bytes, one hosted recipient")
    print(f"  wall time per message, no profiler: {wall:.2f} ms")
    print("  under cProfile, ms per message, by call in submit:")
    for name, ms in _per_step(stats, messages):
        if ms >= 0.005:
            print(f"    {ms:8.2f}  {name}")
    for caller in detail:
        print(f"  under cProfile, ms per message, by call in {caller}:")
        for name, ms in _per_step(stats, messages, caller):
            if ms >= 0.005:
                print(f"    {ms:8.2f}  {name}")
    print("  self time by library, ms per message (cProfile):")
    for name, ms in _by_group(stats, messages):
        print(f"    {ms:8.2f}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--size", type=int, default=10 * 1024)
    parser.add_argument("--database-url", default=None, help="PostgreSQL (emptied!); else SQLite")
    parser.add_argument("--kinds", default="plain,encrypted")
    parser.add_argument(
        "--detail", action="append", default=[], help="also break down this gateway function"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="sealgate-profile-") as tmp:
        data_dir = Path(tmp) / "data"
        env = _env(data_dir, args.database_url)
        if args.database_url:
            _empty_database(args.database_url)
        subprocess.run(
            [sys.executable, "-m", "sealgate", "init", "--domain", "bench.test"],
            env=env,
            capture_output=True,
            check=True,
        )
        os.environ.update(env)
        from gateway import accounts, db
        from gateway.runtime import Runtime
        from gateway.settings import load_settings

        runtime = Runtime.open(load_settings(data_dir, env=env))
        try:
            with db.read_only(runtime.sessions) as session:
                address = accounts.find_address(session, SENDER)
                assert address is not None
                account_id = address.account_id
            print(f"database: {runtime.engine.dialect.name}")
            for kind in args.kinds.split(","):
                run(kind, runtime, account_id, args.messages, args.size, args.detail)
        finally:
            runtime.close()


if __name__ == "__main__":
    main()
