"""The data gate's path rules on one daily session of a large universe, as a daily run judges it:
each symbol's session against its last stored rows.

    .venv/bin/python bench/gate_path.py [--symbols 5000] [--rounds 5]

Synthetic bars (seed 7) for ``--symbols`` symbols; the batch is the last session, the history
each symbol's 7 rows before it. Times ``check_bars`` (every rule) and its path rules alone, in
rounds, and prints the medians. Run it on an earlier checkout for the comparison in
bench/README.md.
"""

import argparse
import statistics
import time
from datetime import date

import polars as pl
from scratch import machine

from engine.data import quality
from engine.data.synthetic import SyntheticSource


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(machine())
    bars = SyntheticSource(n_symbols=args.symbols, seed=7).daily_bars(
        date(2024, 12, 20), date(2025, 1, 3)
    )
    last = bars["ts"].max()
    batch, history = bars.filter(pl.col("ts") == last), bars.filter(pl.col("ts") < last)
    settings = quality.GateSettings()
    timings: dict[str, list[float]] = {"check_bars": [], "path rules": []}
    for _ in range(args.rounds):
        started = time.perf_counter()
        quality.check_bars(batch, history, settings)
        timings["check_bars"].append(time.perf_counter() - started)
        started = time.perf_counter()
        quality._path_rules(batch.with_row_index("_row"), history, settings, frozenset())
        timings["path rules"].append(time.perf_counter() - started)
    print(f"{batch.height:,} bars of one session, {history.height:,} stored rows before it")
    for what, values in timings.items():
        print(
            f"  {what:<12} median {statistics.median(values):6.2f} s "
            f"({min(values):.2f}-{max(values):.2f}), {args.rounds} rounds"
        )


if __name__ == "__main__":
    main()
