"""Start-up time of `sealgate` commands, this tree against a baseline revision, side by side.

    python bench/cli_startup.py                      # baseline: 2fa0a15 (before lazy imports)
    python bench/cli_startup.py --baseline HEAD~3 --runs 30
    python bench/cli_startup.py --baseline none      # this tree alone
    python bench/cli_startup.py --baseline HEAD~1 --database   # commands that open it

The baseline revision is exported with `git archive` into a temp dir and run with
the same interpreter and installed dependencies (PYTHONPATH puts it first), so
only sealgate's own code differs. Each command runs with hyperfine when it is
installed (warm-up runs, interleaved), else with a plain timing loop. Besides the
wall time, a fresh interpreter reports how many modules the command imported.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Commands both trees have (the baseline had no --version).
COMMANDS = [["--help"], ["keys", "--help"], ["user", "add", "--help"], ["queue", "list", "--help"]]
# Commands that open the database (and check its schema revisions), on a SQLite data
# dir that `sealgate init` made with this tree; both trees must share its schema.
DATABASE_COMMANDS = [["domain", "list"], ["user", "list"]]
COUNT_MODULES = (
    "import sys, runpy; sys.argv = ['sealgate', *{args!r}]\n"
    "try:\n    runpy.run_module('sealgate', run_name='__main__')\n"
    "except SystemExit:\n    pass\n"
    "print(len(sys.modules), file=sys.stderr)\n"
)


def export(revision: str, target: Path) -> None:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)


def modules_imported(tree: Path, args: list[str]) -> int:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run(
        [sys.executable, "-c", COUNT_MODULES.format(args=args)],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(proc.stderr.strip().splitlines()[-1])


def hyperfine(trees: dict[str, Path], args: list[str], runs: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = ["hyperfine", "--warmup", "3", "--runs", str(runs), "--export-json", out.name]
        cmd += ["--style", "none"]
        for name, tree in trees.items():
            # cd: `python -m` puts the working directory first on sys.path.
            line = f"cd {tree} && PYTHONPATH={tree} {sys.executable} -m sealgate {' '.join(args)}"
            cmd += ["--command-name", name, line]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        results = json.loads(Path(out.name).read_text())["results"]
    return {r["command"]: r["mean"] for r in results}


def loop(trees: dict[str, Path], args: list[str], runs: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(runs):  # interleaved, so load changes hit both alike
        for name, tree in trees.items():
            env = {**os.environ, "PYTHONPATH": str(tree)}
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "sealgate", *args],
                env=env,
                cwd=tree,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            times[name].append(time.perf_counter() - start)
    return {name: statistics.mean(values) for name, values in times.items()}


def refuse_baseline(revision: str, tree: Path) -> str | None:
    """Why the baseline tree cannot be timed, or None. An old revision may import a
    package the installed set no longer has (2fa0a15 imports crcmod, since replaced by
    anycrc): say so in one line, not in a traceback half-way through the table."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run(
        [sys.executable, "-m", "sealgate", "--help"],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode == 0:
        return None
    last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return (
        f"the baseline {revision} does not run with the installed packages ({last});"
        " give another --baseline, or --baseline none to time this tree alone"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--baseline", default="2fa0a15", help="git revision to compare with, or none"
    )
    parser.add_argument("--runs", type=int, default=20, help="runs per command and tree")
    parser.add_argument(
        "--database",
        action="store_true",
        help="time commands that open a (SQLite) database instead of help texts",
    )
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"this tree": ROOT}
        commands = COMMANDS
        if options.database:
            data_dir = Path(tmp) / "data"
            subprocess.run(
                [sys.executable, "-m", "sealgate", "--data-dir", str(data_dir), "init"],
                cwd=ROOT,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            commands = [["--data-dir", str(data_dir), *args] for args in DATABASE_COMMANDS]
        if options.baseline != "none":
            base = Path(tmp) / "baseline"
            base.mkdir()
            export(options.baseline, base)
            refused = refuse_baseline(options.baseline, base)
            if refused:
                sys.exit(refused)
            trees = {"baseline": base, **trees}
        measure = hyperfine if shutil.which("hyperfine") else loop
        print(f"baseline {options.baseline}; {options.runs} runs each; {measure.__name__}")
        print(f"{'command':28} {'baseline ms':>12} {'now ms':>8} {'ratio':>6} {'modules':>13}")
        for args in commands:
            means = measure(trees, args, options.runs)
            counts = [modules_imported(tree, args) for tree in trees.values()]
            after = means["this tree"] * 1000
            label = "sealgate " + " ".join(args[2:] if options.database else args)
            if "baseline" not in means:
                print(f"{label:28} {'-':>12} {after:8.0f} {'-':>6} {counts[0]:>13}")
                continue
            before = means["baseline"] * 1000
            print(
                f"{label:28} {before:12.0f} {after:8.0f} {after / before:6.2f}"
                f" {counts[0]:>6} → {counts[1]:<5}"
            )


if __name__ == "__main__":
    main()
