"""All six scan families over 1,000 symbols x 5 years of daily bars.

    .venv/bin/python bench/scan_universe.py [--symbols 1000] [--years 5]

Generates synthetic bars (not timed), builds the price panel (timed separately), runs
``scan_universe`` twice (the first call includes numba compilation of vectorbt's indicators)
and prints seconds, input bars per second and signals found. Target: < 2 s of compute.
"""

import argparse
import time
from datetime import date

from engine.data.synthetic import SyntheticSource
from engine.signals.prices import price_panel
from engine.signals.scans import scan_universe


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", type=int, default=1000)
    parser.add_argument("--years", type=int, default=5)
    args = parser.parse_args()
    end = date(2024, 12, 31)
    start = date(end.year - args.years + 1, 1, 1)
    bars = SyntheticSource(n_symbols=args.symbols, seed=1).daily_bars(start, end)
    print(f"bars: {bars.height:,} ({args.symbols} symbols, {start} .. {end})")
    started = time.perf_counter()
    panel = price_panel(bars)
    print(f"price panel:          {time.perf_counter() - started:6.2f} s")
    for label in ("scan (first call)", "scan (warm)"):
        started = time.perf_counter()
        result = scan_universe(panel)
        seconds = time.perf_counter() - started
        print(
            f"{label + ':':<21} {seconds:6.2f} s  {bars.height / seconds:12,.0f} bars/s  "
            f"{result.signals.height:,} signals, {result.skipped.height} skips"
        )


if __name__ == "__main__":
    main()
