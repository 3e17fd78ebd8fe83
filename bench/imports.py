"""What every Dagster run and step process, and every `tradeflow` command, pays before it does
any work: importing the code.

Each figure is a fresh `python -c` process (wall time), measured in interleaved rounds (one of
each per round), reported as the median and the spread. The floors are what the code cannot go
under while it uses these libraries at import: Python itself, dagster, pandas + polars + psycopg.
With ``--baseline REV`` the same imports are timed on a checkout of that git revision (a
worktree in a temporary directory), in the same rounds.

    .venv/bin/python bench/imports.py [--rounds 7] [--baseline REV]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "python": "pass",
    "dagster (floor)": "import dagster",
    "pandas + polars + psycopg (floor)": "import pandas, polars, psycopg",
    "import orchestration.definitions": "import orchestration.definitions",
    "import engine.cli (every command)": "import engine.cli",
}


def timed(code: str, cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--baseline", default=None, help="a git revision to compare with")
    args = parser.parse_args()
    trees = {"now": ROOT}
    with tempfile.TemporaryDirectory() as scratch:
        if args.baseline:
            before = Path(scratch) / "baseline"
            subprocess.run(
                ["git", "worktree", "add", "--detach", str(before), args.baseline],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
            trees[args.baseline] = before
        try:
            cases = [
                (label, tree, code)
                for label, code in CASES.items()
                for tree in (trees if label.startswith("import ") else {"now": ROOT})
            ]
            runs: dict[tuple[str, str], list[float]] = {(c[0], c[1]): [] for c in cases}
            for _label, tree, code in cases:  # once unmeasured: compiled files written
                timed(code, trees[tree])
            for _ in range(args.rounds):
                for label, tree, code in cases:
                    runs[label, tree].append(timed(code, trees[tree]))
        finally:
            if args.baseline:
                subprocess.run(
                    ["git", "worktree", "remove", "--force", str(trees[args.baseline])],
                    cwd=ROOT,
                    check=False,
                    capture_output=True,
                )
    print(f"{args.rounds} interleaved rounds, wall time of a fresh process")
    print(f"{'':38s} {'tree':>10s} {'median':>8s} {'min':>7s} {'max':>7s}")
    for (label, tree), values in runs.items():
        print(
            f"{label:38s} {tree:>10s} {statistics.median(values):7.2f}s "
            f"{min(values):6.2f}s {max(values):6.2f}s"
        )
    if args.baseline:
        for label in CASES:
            if (label, args.baseline) in runs:
                ratio = statistics.median(runs[label, args.baseline]) / statistics.median(
                    runs[label, "now"]
                )
                print(f"{label}: {ratio:.1f}x faster than {args.baseline}")


if __name__ == "__main__":
    main()
