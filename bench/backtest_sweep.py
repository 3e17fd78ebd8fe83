"""SMA sweep of 100 (fast, slow) pairs over the 482 real symbols, against backtesting.py (one
backtest, and its own parallel ``Backtest.optimize`` over the same pairs) and plain vectorbt.

    .venv/bin/python bench/backtest_sweep.py [--symbol AAPL] [--fast 20] [--slow 100]
        [--rounds 5] [--optimize-symbols AAPL,MSFT,JPM,XOM,JNJ] [--vbt-pairs-per-call 5]

1. ``sma_cross_sweep`` over all symbols of ../shared/data (clean bars, adjusted prices) and 100
   pairs (fast 5..50 step 5 x slow 60..240 step 20): 48,200 single-symbol backtests in one call,
   as the pipeline runs it (metrics, trade list, benchmarks, and every backtest re-run with
   doubled costs for the validation gate); prints seconds and backtests per second.
2. One symbol and one pair through backtesting.py (the same rules: signal on the close, fill at
   the next open, no costs; after 2 warm-up runs, the median of 7); prints its time and the
   ratio of that time to the per-backtest time of the sweep.
3. backtesting.py's ``Backtest.optimize`` over the same 100 pairs on each of
   ``--optimize-symbols`` (the first on its own, then all of them: 100 backtests per symbol),
   in a fresh Python process holding only those bars, as a user's would. In backtesting.py 0.6.6
   a grid optimize runs in a ``multiprocessing.Pool()`` (one process per core,
   ``os.cpu_count()``), started with ``fork`` on Linux; the bars go to the workers through shared
   memory and the 100 parameter sets in batches of len / cpu_count (two batches of 50 on two
   cores), then the best pair is run once more in the calling process. Prints the time per
   backtest (the optimize call's time over 100), the ratio to the sweep's, the CPU time of the
   processes over the wall time (about 2 when both cores work), how many worker processes ran
   batches and how much of the time two ran at once.
4. Plain vectorbt over the same 100 pairs and symbols, the strongest generic baseline:
   ``MA.run``, crossings shifted to the next bar, ``Portfolio.from_signals`` (grouped by pair,
   capital split equally across symbols, as the sweep), the same outputs as the sweep (value,
   returns, Sharpe, drawdown, trade records, and the run again at doubled costs), in calls of
   ``--vbt-pairs-per-call`` pairs (5: about 2,400 columns; 2 measured the same, 20 slower), a
   garbage collection after each (vectorbt's caches are freed by none other);
   prints its time, the part spent in ``MA.run`` and ``from_signals``, and the ratio to the sweep.
   The first round checks that its portfolio values equal the sweep's.
5. Steps 1-4 alternate ``--rounds`` times, so all see the same state of the machine (this one's
   speed drifts over minutes); prints each round's ratios, their medians, and for backtesting.py
   the most conservative pairing (its fastest round against the sweep's slowest).
6. The sweep once more on one core (the rounds use every core, two here).
7. Whether the sweep and backtesting.py agree on every trade's entry and exit day and price.
"""

import argparse
import gc
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("TQDM_DISABLE", "1")  # backtesting.py's progress bar: off, it only slows it
import vectorbt as vbt  # noqa: E402
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


def _ohlc(panel: PricePanel, symbol: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Open": panel.open[symbol],
            "High": panel.high[symbol],
            "Low": panel.low[symbol],
            "Close": panel.close[symbol],
            "Volume": panel.volume[symbol],
        }
    ).dropna()


class SmaCrossParams(Strategy):
    """The same rules with the pair as strategy parameters, for ``Backtest.optimize`` (a class
    at module level: the pool's workers get it by reference)."""

    fast = 20
    slow = 100

    def init(self) -> None:
        self.fast_ma = self.I(_sma, self.data.Close, self.fast)
        self.slow_ma = self.I(_sma, self.data.Close, self.slow)

    def next(self) -> None:
        if crossover(self.fast_ma, self.slow_ma) and not self.position:
            self.buy()
        elif crossover(self.slow_ma, self.fast_ma) and self.position:
            self.position.close()


def backtesting_py(panel: PricePanel, symbol: str, fast: int, slow: int) -> tuple[float, list]:
    ohlc = _ohlc(panel, symbol)

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


def _optimize_worker(path: str) -> None:
    """``Backtest.optimize`` over the sweep's pairs on each symbol of the OHLC frames pickled at
    ``path``, in this process (a fresh one: see ``backtesting_py_optimize``); prints as JSON the
    seconds of each, the CPU seconds of the pool's worker processes (reaped when each pool
    closes) and of this one, and each batch of parameter sets a worker ran: its process id,
    start and end (``perf_counter`` is the system's monotonic clock, the same in every process).
    The batches are logged by wrapping backtesting.py's ``Backtest._mp_task`` (one file write
    per batch; the results are untouched)."""
    import backtesting.backtesting as bt_module

    frames: dict[str, pd.DataFrame] = pd.read_pickle(path)
    log = Path(path).with_suffix(".batches")
    original = bt_module.Backtest._mp_task

    def logged(arg: tuple) -> list:
        began = time.perf_counter()
        out = original(arg)
        with log.open("a") as f:
            f.write(f"{os.getpid()} {began!r} {time.perf_counter()!r}\n")
        return out

    # Pickled by name for the pool's workers: the name must lead to this function.
    logged.__module__, logged.__qualname__ = original.__module__, original.__qualname__
    bt_module.Backtest._mp_task = staticmethod(logged)  # type: ignore[method-assign]
    grid = {"fast": list(GRID.fast_windows), "slow": list(GRID.slow_windows)}
    seconds, batches = [], []
    cpu = time.process_time()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for ohlc in frames.values():
        log.write_text("")
        backtest = Backtest(ohlc, SmaCrossParams, cash=10_000_000, commission=0.0)
        started = time.perf_counter()
        backtest.optimize(**grid)  # type: ignore[arg-type]
        seconds.append(time.perf_counter() - started)
        batches.append([[float(x) for x in line.split()] for line in log.read_text().splitlines()])
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    workers = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "workers_cpu": workers,
                "own_cpu": time.process_time() - cpu,
                "batches": batches,
            }
        )
    )


def backtesting_py_optimize(path: Path) -> dict:
    """The optimize runs of ``_optimize_worker`` in a fresh Python process holding only the
    bars of the symbols, as a user's would: the pool's workers are forks of the process that
    calls optimize, and in a trial on a busy machine forks of this one (several GB after the
    sweep and vectorbt) used 35 ms of CPU per backtest, against 27 ms in a fresh process."""
    done = subprocess.run(
        [sys.executable, __file__, "--optimize-worker", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def side_by_side(batches: list[list[float]]) -> tuple[int, float]:
    """How many worker processes ran batches, and the share of the time any batch ran during
    which two or more ran at once."""
    events = sorted([(start, 1) for _, start, _ in batches] + [(end, -1) for _, _, end in batches])
    running, last, any_time, two_time = 0, 0.0, 0.0, 0.0
    for at, step in events:
        if running >= 1:
            any_time += at - last
        if running >= 2:
            two_time += at - last
        running, last = running + step, at
    return len({pid for pid, _, _ in batches}), two_time / any_time if any_time else 0.0


def plain_vectorbt(
    panel: PricePanel, pairs_per_call: int
) -> tuple[float, float, pd.DataFrame, pd.Series]:
    """The sweep written with vectorbt's own high-level calls: seconds, seconds in ``MA.run``
    and ``from_signals`` (the first run), the portfolio values and the number of trades (by
    pair)."""
    close = panel.close
    filled = close.ffill()
    n_symbols = close.shape[1]
    pairs = GRID.pairs()
    values, counts, simulating = [], [], 0.0
    # vectorbt caches results in its objects through reference cycles (an lru_cache closing over
    # the object), which only the cycle collector frees: without a collection after each call the
    # process grew past 13 GB. Freezing what exists first keeps each collection to the call's own
    # objects (0.03 s instead of 0.3 s).
    gc.freeze()
    started = time.perf_counter()
    for start in range(0, len(pairs), pairs_per_call):
        chunk = pairs[start : start + pairs_per_call]
        began = time.perf_counter()
        fast = vbt.MA.run(close, window=[f for f, _ in chunk], short_name="fast")
        slow = vbt.MA.run(close, window=[s for _, s in chunk], short_name="slow")
        entries = fast.ma_crossed_above(slow).shift(1, fill_value=False)
        exits = fast.ma_crossed_below(slow).shift(1, fill_value=False)

        def simulate(costs: float, entries: pd.DataFrame = entries, exits: pd.DataFrame = exits):
            return vbt.Portfolio.from_signals(
                close=filled,
                entries=entries,
                exits=exits,
                size=GRID.fraction,
                size_type="percent",
                price=panel.open,
                fees=costs,
                slippage=costs,
                init_cash=GRID.init_cash / n_symbols,
                group_by=["fast_window", "slow_window"],
                cash_sharing=False,
                freq="1D",
            )

        portfolio = simulate(GRID.fees)
        simulating += time.perf_counter() - began
        value = portfolio.value()
        portfolio.returns()
        portfolio.total_return()
        portfolio.sharpe_ratio()
        portfolio.max_drawdown()
        count = portfolio.trades.count()
        portfolio.trades.win_rate()
        portfolio.trades.values  # noqa: B018 - the trade records, as the sweep keeps them
        simulate(GRID.fees * 2).sharpe_ratio()  # the stress run at doubled costs
        value.columns = [f"sma_cross_{f}_{s}" for f, s in value.columns]
        values.append(value)
        count.index = value.columns
        counts.append(count)
        del portfolio, fast, slow, entries, exits, simulate
        gc.collect()
    seconds = time.perf_counter() - started
    gc.unfreeze()
    return seconds, simulating, pd.concat(values, axis=1), pd.concat(counts)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbol", default="AAPL")
    parser.add_argument("--fast", type=int, default=20)
    parser.add_argument("--slow", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument(
        "--optimize-symbols",
        default="AAPL,MSFT,JPM,XOM,JNJ",
        help="symbols for backtesting.py's optimize; the first is also timed on its own",
    )
    parser.add_argument("--vbt-pairs-per-call", type=int, default=5)
    parser.add_argument("--optimize-worker", help=argparse.SUPPRESS)  # internal: see above
    args = parser.parse_args()
    if args.optimize_worker:
        _optimize_worker(args.optimize_worker)
        return
    rounds = args.rounds
    optimize_symbols = args.optimize_symbols.split(",")
    vbt.settings.returns["year_freq"] = "252 days"  # as the sweep's metrics

    bars = check_bars(LocalFileSource(str(DATA)).daily_bars(date(2015, 1, 1), date(2020, 12, 31)))
    panel = price_panel(bars.clean)
    del bars  # the panel is all the rounds need
    n_symbols, n_pairs = len(panel.symbols), len(GRID.pairs())
    n_backtests = n_pairs * n_symbols
    warm = PricePanel(open=panel.open.iloc[:, :2], close=panel.close.iloc[:, :2])
    sma_cross_sweep(warm, GRID)
    plain_vectorbt(warm, args.vbt_pairs_per_call)  # compiles what vectorbt has not cached
    ratios, sweep_times, bt_times = [], [], []
    opt_one, opt_all, opt_cores, vbt_times, vbt_sim_times = [], [], [], [], []
    opt_workers: list[int] = []
    opt_overlap: list[float] = []
    ohlc_path = Path(tempfile.mkdtemp(prefix="bench_optimize_")) / "ohlc.pkl"
    pd.to_pickle({symbol: _ohlc(panel, symbol) for symbol in optimize_symbols}, ohlc_path)
    loads = [os.getloadavg()[0]]
    vbt_check = ""
    for round_ in range(1, rounds + 1):
        started = time.perf_counter()
        sweep = sma_cross_sweep(panel, GRID)
        seconds = time.perf_counter() - started
        per_backtest = seconds / n_backtests
        trades = sweep.trades[
            (sweep.trades["strategy_id"] == f"sma_cross_{args.fast}_{args.slow}")
            & (sweep.trades["symbol"] == args.symbol)
            & (sweep.trades["status"] == "closed")
        ]
        sweep_equity = sweep.equity if round_ == 1 else None
        sweep_trades = sweep.metrics["trades"] if round_ == 1 else None
        # backtesting.py runs without the sweep's objects alive, so Python's garbage collector
        # has only its own to walk (turning the collector off made no measurable difference).
        del sweep
        gc.collect()
        bt_seconds, bt_trades = backtesting_py(panel, args.symbol, args.fast, args.slow)
        ratios.append(bt_seconds / per_backtest)
        sweep_times.append(per_backtest)
        bt_times.append(bt_seconds)
        optimized = backtesting_py_optimize(ohlc_path)
        opt_seconds, workers_cpu = optimized["seconds"], optimized["workers_cpu"]
        opt_cores.append((workers_cpu + optimized["own_cpu"]) / sum(opt_seconds))
        overlaps = [side_by_side(b) for b in optimized["batches"]]
        opt_workers.append(max(n for n, _ in overlaps))
        opt_overlap.append(statistics.median(o for _, o in overlaps))
        opt_one.append(opt_seconds[0] / n_pairs)
        opt_all.append(sum(opt_seconds) / (n_pairs * len(optimize_symbols)))
        vbt_seconds, vbt_sim, vbt_values, vbt_trades = plain_vectorbt(
            panel, args.vbt_pairs_per_call
        )
        vbt_times.append(vbt_seconds / n_backtests)
        vbt_sim_times.append(vbt_sim / n_backtests)
        if sweep_equity is not None and sweep_trades is not None:
            vbt_values = vbt_values[sweep_equity.columns]
            difference = float(np.nanmax(np.abs(vbt_values.to_numpy() - sweep_equity.to_numpy())))
            same_nan = bool((vbt_values.isna() == sweep_equity.isna()).all().all())
            same_trades = bool((vbt_trades[sweep_trades.index] == sweep_trades).all())
            vbt_check = (
                f"plain vectorbt against the sweep (round 1): max |value difference| "
                f"{difference:.2e} on {GRID.init_cash:,.0f} per strategy, NaN in the same "
                f"places: {same_nan}; same number of trades for every pair: {same_trades} "
                f"({int(sweep_trades.sum()):,} in all)"
            )
            del sweep_equity, sweep_trades
        del vbt_values
        gc.collect()
        loads.append(os.getloadavg()[0])
        print(
            f"round {round_}: sweep {n_pairs} pairs x {n_symbols} symbols = "
            f"{n_backtests:,} backtests in {seconds:.1f} s ({n_backtests / seconds:,.0f} "
            f"backtests/s, {per_backtest * 1000:.3f} ms each); backtesting.py, one backtest "
            f"({args.symbol} {args.fast}/{args.slow}): {bt_seconds:.4f} s; "
            f"ratio {ratios[-1]:,.0f}x",
            flush=True,
        )
        print(
            f"  backtesting.py optimize, {n_pairs} pairs: {args.symbol} {opt_seconds[0]:.2f} s "
            f"({opt_one[-1] * 1000:.2f} ms per backtest, {opt_one[-1] / per_backtest:,.0f}x the "
            f"sweep's); {len(optimize_symbols)} symbols {sum(opt_seconds):.2f} s "
            f"({opt_all[-1] * 1000:.2f} ms per backtest, {opt_all[-1] / per_backtest:,.0f}x); "
            f"CPU over wall time {opt_cores[-1]:.2f} (worker processes {workers_cpu:.1f} s); "
            f"{opt_workers[-1]} worker processes, two batches at once "
            f"{opt_overlap[-1]:.0%} of the time (median of the symbols)",
            flush=True,
        )
        print(
            f"  plain vectorbt, {args.vbt_pairs_per_call} pairs per call: {vbt_seconds:.1f} s "
            f"({vbt_times[-1] * 1000:.3f} ms per backtest, {vbt_times[-1] / per_backtest:.1f}x "
            f"the sweep's; MA.run + from_signals {vbt_sim:.1f} s)",
            flush=True,
        )
    sweep_median = statistics.median(sweep_times)
    print(
        f"ratio backtesting.py / per-backtest sweep time, median of {rounds} rounds: "
        f"{statistics.median(ratios):,.0f}x (rounds: {', '.join(f'{r:.0f}x' for r in ratios)}); "
        "backtesting.py's fastest round against the sweep's slowest: "
        f"{min(bt_times) / max(sweep_times):,.0f}x"
    )
    opt_one_ratios = [o / s for o, s in zip(opt_one, sweep_times, strict=True)]
    opt_all_ratios = [o / s for o, s in zip(opt_all, sweep_times, strict=True)]
    vbt_ratios = [v / s for v, s in zip(vbt_times, sweep_times, strict=True)]
    print(
        f"medians of {rounds} interleaved rounds: sweep {sweep_median * 1000:.3f} ms per "
        f"backtest; backtesting.py optimize {statistics.median(opt_one) * 1000:.2f} ms per "
        f"backtest on {args.symbol}, {statistics.median(opt_all) * 1000:.2f} ms on "
        f"{len(optimize_symbols)} symbols, CPU over wall time {statistics.median(opt_cores):.2f} "
        f"({max(opt_workers)} worker processes, two batches at once "
        f"{statistics.median(opt_overlap):.0%} of the time); "
        f"plain vectorbt {statistics.median(vbt_times) * 1000:.3f} ms per backtest "
        f"(MA.run + from_signals {statistics.median(vbt_sim_times) * 1000:.3f} ms)"
    )
    print(
        f"ratio backtesting.py optimize / sweep per backtest, median of the rounds' ratios: "
        f"{statistics.median(opt_one_ratios):,.0f}x on {args.symbol} "
        f"({min(opt_one_ratios):,.0f}-{max(opt_one_ratios):,.0f}x), "
        f"{statistics.median(opt_all_ratios):,.0f}x on {len(optimize_symbols)} symbols "
        f"({min(opt_all_ratios):,.0f}-{max(opt_all_ratios):,.0f}x)"
    )
    print(
        f"ratio plain vectorbt / sweep per backtest, median of the rounds' ratios: "
        f"{statistics.median(vbt_ratios):.2f}x ({min(vbt_ratios):.2f}-{max(vbt_ratios):.2f}x); "
        f"its MA.run + from_signals alone "
        f"{statistics.median(v / s for v, s in zip(vbt_sim_times, sweep_times, strict=True)):.2f}x"
    )
    print(vbt_check)
    started = time.perf_counter()
    sma_cross_sweep(panel, GRID, workers=1)
    one_core = (time.perf_counter() - started) / n_backtests
    loads.append(os.getloadavg()[0])
    print(
        f"the same sweep on one core (workers=1): {one_core * n_backtests:.1f} s, "
        f"{one_core * 1000:.3f} ms per backtest; against backtesting.py's median round "
        f"{statistics.median(bt_times) / one_core:,.0f}x, "
        f"its fastest {min(bt_times) / one_core:,.0f}x; against backtesting.py optimize "
        f"(median round, {len(optimize_symbols)} symbols) "
        f"{statistics.median(opt_all) / one_core:,.0f}x; against plain vectorbt (median round, "
        f"one core too) {statistics.median(vbt_times) / one_core:.2f}x"
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
    print(f"1-minute load average after each round: {', '.join(f'{x:.2f}' for x in loads)}")
    shutil.rmtree(ohlc_path.parent)


if __name__ == "__main__":
    main()
