"""SMA sweep of 100 (fast, slow) pairs over the 482 real symbols, against backtesting.py.

    .venv/bin/python bench/backtest_sweep.py [--symbol AAPL] [--fast 20] [--slow 100]

1. ``sma_cross_sweep`` over all symbols of ../shared/data (clean bars, adjusted prices) and 100
   pairs (fast 5..50 step 5 x slow 60..240 step 20): 48,200 single-symbol backtests in one call;
   prints seconds and backtests per second.
2. One symbol and one pair through backtesting.py (the same rules: signal on the close, fill at
   the next open, no costs; the median of 7 runs) and through ``sma_cross_sweep``; prints both
   times, the ratio of backtesting.py's time to the per-backtest time of the sweep, and whether
   the two agree on every trade's entry and exit day and price.
"""

import argparse
import statistics
import time
from datetime import date
from pathlib import Path

import pandas as pd
from backtesting import Backtest, Strategy
from backtesting.lib import crossover

from engine.backtest.sma_sweep import SweepParams, sma_cross_sweep
from engine.data.quality import check_bars
from engine.data.sources import LocalFileSource
from engine.signals.prices import PricePanel, price_panel

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "us_equities_daily.parquet"
REPEAT = 7
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
    for _ in range(REPEAT):  # its time varies from run to run: the median of REPEAT runs
        started = time.perf_counter()
        stats = Backtest(ohlc, SmaCross, cash=10_000_000, commission=0.0).run()
        times.append(time.perf_counter() - started)
    seconds = statistics.median(times)
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
    started = time.perf_counter()
    sweep = sma_cross_sweep(panel, GRID)
    seconds = time.perf_counter() - started
    per_backtest = seconds / n_backtests
    print(
        f"sweep: {len(GRID.pairs())} pairs x {len(panel.symbols)} symbols = {n_backtests:,} "
        f"backtests in {seconds:.1f} s: {n_backtests / seconds:,.0f} backtests/s"
    )

    one = PricePanel(open=panel.open[[args.symbol]], close=panel.close[[args.symbol]])
    solo = SweepParams(fast_windows=(args.fast,), slow_windows=(args.slow,), fees=0.0, slippage=0.0)
    started = time.perf_counter()
    single = sma_cross_sweep(one, solo)
    single_seconds = time.perf_counter() - started
    bt_seconds, bt_trades = backtesting_py(panel, args.symbol, args.fast, args.slow)
    ours = sweep.trades[
        (sweep.trades["strategy_id"] == f"sma_cross_{args.fast}_{args.slow}")
        & (sweep.trades["symbol"] == args.symbol)
        & (sweep.trades["status"] == "closed")
    ]
    ours_list = [
        (r.entry_ts, round(r.entry_price, 6), r.exit_ts, round(r.exit_price, 6))
        for r in ours.itertuples()
    ]
    closed_bt = [t for t in bt_trades if t[2] != panel.close[args.symbol].dropna().index[-1].date()]
    agree = ours_list == closed_bt
    print(
        f"one backtest ({args.symbol} {args.fast}/{args.slow}): backtesting.py {bt_seconds:.3f} s "
        f"(median of {REPEAT}), "
        f"sma_cross_sweep alone {single_seconds:.3f} s, per backtest in the sweep "
        f"{per_backtest * 1000:.3f} ms"
    )
    print(f"ratio backtesting.py / per-backtest sweep time: {bt_seconds / per_backtest:,.0f}x")
    print(
        f"closed trades: ours {len(ours_list)}, backtesting.py {len(closed_bt)}, "
        f"identical entry/exit days and prices: {agree}"
    )
    if not agree:
        for mine, theirs in zip(ours_list, closed_bt, strict=False):
            if mine != theirs:
                print(f"  first difference: ours {mine} vs backtesting.py {theirs}")
                break
    del single


if __name__ == "__main__":
    main()
