"""SMA sweep of 100 (fast, slow) pairs over the 482 real symbols, against backtesting.py.

    .venv/bin/python bench/backtest_sweep.py [--symbol AAPL] [--fast 20] [--slow 100]

1. ``sma_cross_sweep`` over all symbols of ../shared/data (clean bars, adjusted prices) and 100
   pairs (fast 5..50 step 5 x slow 60..240 step 20): 48,200 single-symbol backtests in one call,
   as the pipeline runs it (metrics, trade list, benchmarks, and every backtest re-run with
   doubled costs for the validation gate); prints seconds and backtests per second.
2. One symbol and one pair through backtesting.py (the same rules: signal on the close, fill at
   the next open, no costs; after 2 warm-up runs, the median of 7); prints its time and the
   ratio of that time to the per-backtest time of the sweep.
3. Steps 1 and 2 alternate ``ROUNDS`` times, so both see the same state of the machine (this
   one's speed drifts over minutes); prints each round's ratio, their median, and the most
   conservative pairing (backtesting.py's fastest round against the sweep's slowest).
4. The sweep once more on one core (the rounds use every core, two here).
5. Whether the sweep and backtesting.py agree on every trade's entry and exit day and price.
"""

import argparse
import gc
import os
import statistics
import time
from datetime import date
from pathlib import Path

import pandas as pd

os.environ.setdefault("TQDM_DISABLE", "1")  # backtesting.py's progress bar: off, it only slows it
from backtesting import Backtest, Strategy  # noqa: E402
from backtesting.lib import crossover  # noqa: E402

from engine.backtest.sma_sweep import SweepParams, sma_cross_sweep
from engine.data.quality import check_bars
from engine.data.sources import LocalFileSource
from engine.signals.prices import PricePanel, price_panel

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "us_equities_daily.parquet"
REPEAT = 7
WARM_UP = 2
ROUNDS = 5
GRID = SweepParams(
    fast_windows=tuple(range(5, 55, 5)),
    slow_windows=tuple(range(60, 260, 20)),
    fees=0.0,
    slippage=0.0,
)


def _sma(values: pd.Series, n: int) -> pd.Series:
    return pd.Series(values).rolling(n).mean()


def backtesting_py(panel: PricePanel, symbol: str, fast: int, slow: int) -> tuple[float, list]:
    ohlc = pd.DataFrame(
        {
            "Open": panel.open[symbol],
            "High": panel.high[symbol],
            "Low": panel.low[symbol],
            "Close": panel.close[symbol],
            "Volume": panel.volume[symbol],
        }
    ).dropna()

    class SmaCross(Strategy):
        def init(self) -> None:
            self.fast = self.I(_sma, self.data.Close, fast)
            self.slow = self.I(_sma, self.data.Close, slow)

        def next(self) -> None:
            if crossover(self.fast, self.slow) and not self.position:
                self.buy()
            elif crossover(self.slow, self.fast) and self.position:
                self.position.close()

    times = []
    for _ in range(WARM_UP + REPEAT):  # its first runs are slower: the median of the rest
        started = time.perf_counter()
        stats = Backtest(ohlc, SmaCross, cash=10_000_000, commission=0.0).run()
        times.append(time.perf_counter() - started)
    seconds = statistics.median(times[WARM_UP:])
    trades = [
        (
            row.EntryTime.date(),
            round(row.EntryPrice, 6),
            row.ExitTime.date(),
            round(row.ExitPrice, 6),
        )
        for row in stats["_trades"].itertuples()
    ]
    return seconds, trades


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbol", default="AAPL")
    parser.add_argument("--fast", type=int, default=20)
    parser.add_argument("--slow", type=int, default=100)
    args = parser.parse_args()

    bars = check_bars(LocalFileSource(str(DATA)).daily_bars(date(2015, 1, 1), date(2020, 12, 31)))
    panel = price_panel(bars.clean)
    n_backtests = len(GRID.pairs()) * len(panel.symbols)
    sma_cross_sweep(PricePanel(open=panel.open.iloc[:, :2], close=panel.close.iloc[:, :2]), GRID)
    ratios, sweep_times, bt_times = [], [], []
    for round_ in range(1, ROUNDS + 1):
        started = time.perf_counter()
        sweep = sma_cross_sweep(panel, GRID)
        seconds = time.perf_counter() - started
        per_backtest = seconds / n_backtests
        trades = sweep.trades[
            (sweep.trades["strategy_id"] == f"sma_cross_{args.fast}_{args.slow}")
            & (sweep.trades["symbol"] == args.symbol)
            & (sweep.trades["status"] == "closed")
        ]
        # backtesting.py runs without the sweep's objects alive, so Python's garbage collector
        # has only its own to walk (turning the collector off made no measurable difference).
        del sweep
        gc.collect()
        bt_seconds, bt_trades = backtesting_py(panel, args.symbol, args.fast, args.slow)
        ratios.append(bt_seconds / per_backtest)
        sweep_times.append(per_backtest)
        bt_times.append(bt_seconds)
        print(
            f"round {round_}: sweep {len(GRID.pairs())} pairs x {len(panel.symbols)} symbols = "
            f"{n_backtests:,} backtests in {seconds:.1f} s ({n_backtests / seconds:,.0f} "
            f"backtests/s, {per_backtest * 1000:.3f} ms each); backtesting.py, one backtest "
            f"({args.symbol} {args.fast}/{args.slow}): {bt_seconds:.4f} s; "
            f"ratio {ratios[-1]:,.0f}x",
            flush=True,
        )
    print(
        f"ratio backtesting.py / per-backtest sweep time, median of {ROUNDS} rounds: "
        f"{statistics.median(ratios):,.0f}x (rounds: {', '.join(f'{r:.0f}x' for r in ratios)}); "
        "backtesting.py's fastest round against the sweep's slowest: "
        f"{min(bt_times) / max(sweep_times):,.0f}x"
    )
    started = time.perf_counter()
    sma_cross_sweep(panel, GRID, workers=1)
    one_core = (time.perf_counter() - started) / n_backtests
    print(
        f"the same sweep on one core (workers=1): {one_core * n_backtests:.1f} s, "
        f"{one_core * 1000:.3f} ms per backtest; against backtesting.py's median round "
        f"{statistics.median(bt_times) / one_core:,.0f}x, "
        f"its fastest {min(bt_times) / one_core:,.0f}x"
    )
    ours_list = [
        (r.entry_ts, round(r.entry_price, 6), r.exit_ts, round(r.exit_price, 6))
        for r in trades.itertuples()
    ]
    closed_bt = [t for t in bt_trades if t[2] != panel.close[args.symbol].dropna().index[-1].date()]
    agree = ours_list == closed_bt
    print(
        f"closed trades: ours {len(ours_list)}, backtesting.py {len(closed_bt)}, "
        f"identical entry/exit days and prices: {agree}"
    )
    if not agree:
        for mine, theirs in zip(ours_list, closed_bt, strict=False):
            if mine != theirs:
                print(f"  first difference: ours {mine} vs backtesting.py {theirs}")
                break


if __name__ == "__main__":
    main()
