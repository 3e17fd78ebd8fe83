"""Signal-following backtests: holding rules, fills and costs by hand, no look-ahead, and the
signals that reach a strategy through its subscriptions (point-in-time filter scanners)."""

from datetime import date

import pandas as pd
import polars as pl
import psycopg
import pytest

from engine.backtest.signal_follow import (
    SignalCosts,
    SignalStrategy,
    holding,
    signal_follow_backtest,
    signal_strategies,
)
from engine.backtest.store import latest_backtest_run, record_backtest
from engine.data.read_store import load_bars
from engine.data.synthetic import SyntheticSource
from engine.errors import ConfigurationError, NotFoundError
from engine.signals.prices import PricePanel, price_panel
from engine.signals.scanners import Scanner, filter_members_by_day
from engine.signals.store import save_scanner
from engine.strategies import SIGNAL_FOLLOW
from engine.strategies.config import add_signal_strategy, get_strategy, update_strategy
from engine.strategies.subscriptions import subscribe
from tests.helpers import store_bars_and_signals

DAYS = pd.bdate_range("2024-01-01", periods=10)


def _signals(*rows: tuple[str, str, str]) -> pl.DataFrame:
    """(symbol, ISO day, direction) rows."""
    return pl.DataFrame(
        {
            "symbol": [r[0] for r in rows],
            "ts": [date.fromisoformat(r[1]) for r in rows],
            "direction": [r[2] for r in rows],
        },
        schema={"symbol": pl.String, "ts": pl.Date, "direction": pl.String},
    )


def test_a_long_signal_holds_for_hold_days_a_new_one_extends_a_short_one_ends() -> None:
    held = holding(
        _signals(
            ("A", "2024-01-02", "long"),
            ("A", "2024-01-04", "long"),  # extends to 01-04 + 2 more bars
            ("B", "2024-01-02", "long"),
            ("B", "2024-01-03", "short"),  # ends B's holding
            ("C", "2024-01-08", "long"),
            ("C", "2024-01-08", "short"),  # same bar: the short wins
            ("A", "2024-01-06", "long"),  # a Saturday: no such bar, ignored
        ),
        DAYS,
        ["A", "B", "C"],
        hold_days=3,
    )
    day = {d.date().isoformat(): i for i, d in enumerate(DAYS)}
    assert [d for d in day if held["A"].iloc[day[d]]] == [
        "2024-01-02",
        "2024-01-03",
        "2024-01-04",
        "2024-01-05",
        "2024-01-08",
    ]
    assert [d for d in day if held["B"].iloc[day[d]]] == ["2024-01-02"]
    assert not held["C"].any()


def _panel() -> PricePanel:
    opens = pd.DataFrame(
        {"A": [10, 11, 12, 13, 14, 15, 16, 17, 18, 19], "B": [20.0] * 10}, index=DAYS, dtype=float
    )
    return PricePanel(open=opens, close=opens + 0.5)


def test_fills_at_the_next_open_with_costs_match_a_hand_calculation() -> None:
    fees, slippage = 0.001, 0.002
    strategy = SignalStrategy("s", 2, _signals(("A", "2024-01-02", "long")), ("A", "B"))
    result = signal_follow_backtest(_panel(), [strategy], SignalCosts(fees, slippage, 100_000.0))
    (trade,) = result.trades.itertuples()
    # Held after the closes of 01-02 and 01-03: bought at 01-03's open, sold at 01-05's open.
    assert (trade.entry_ts, trade.exit_ts) == (date(2024, 1, 3), date(2024, 1, 5))
    assert trade.entry_price == pytest.approx(12 * (1 + slippage))
    assert trade.exit_price == pytest.approx(14 * (1 - slippage))
    # Half the capital in A: all of it spent on shares and the fee, then sold less the fee.
    a_cash = 50_000.0
    shares = a_cash / (12 * (1 + slippage) * (1 + fees))
    proceeds = shares * 14 * (1 - slippage) * (1 - fees)
    expected = (proceeds + 50_000.0) / 100_000.0 - 1
    assert result.metrics.loc["s", "total_return"] == pytest.approx(expected, rel=1e-9)
    assert result.metrics.loc["s", "trades"] == 1
    assert result.family == SIGNAL_FOLLOW and result.strategy_params == {"s": {"hold_days": 2}}


def test_later_bars_and_signals_do_not_change_earlier_results() -> None:
    strategy = SignalStrategy("s", 2, _signals(("A", "2024-01-02", "long")), ("A", "B"))
    base = signal_follow_backtest(_panel(), [strategy], SignalCosts())
    changed_panel = _panel()
    changed_panel.open.iloc[7:] *= 3  # from 01-10 on
    changed_panel.close.iloc[7:] *= 3
    later = SignalStrategy(
        "s",
        2,
        _signals(("A", "2024-01-02", "long"), ("B", "2024-01-09", "long")),
        ("A", "B"),
    )
    changed = signal_follow_backtest(changed_panel, [later], SignalCosts())
    pd.testing.assert_series_equal(base.equity["s"].iloc[:7], changed.equity["s"].iloc[:7])
    assert base.trades.iloc[0].equals(changed.trades.iloc[0])


def test_filter_scanner_membership_is_judged_on_bars_up_to_each_day() -> None:
    bars = pl.DataFrame(
        {
            "symbol": ["A"] * 4,
            "ts": [date(2024, 1, d) for d in (2, 3, 4, 5)],
            "close": [4.0, 4.0, 8.0, 8.0],
            "volume": [100, 100, 100, 100],
        }
    )
    members = filter_members_by_day(Scanner("cheap", "filter", min_price=5.0, window=2), bars)
    # The 2-bar average close: -, 4, 6, 8.
    assert members["ts"].to_list() == [date(2024, 1, 4), date(2024, 1, 5)]


@pytest.fixture
def stored(conn: psycopg.Connection) -> SyntheticSource:
    return store_bars_and_signals(conn)


def test_a_signal_strategy_trades_only_the_signals_that_reach_it(
    conn: psycopg.Connection, stored: SyntheticSource
) -> None:
    add_signal_strategy(conn, "rsi-pair", 5, "alice", "mean reversion on two names")
    add_signal_strategy(conn, "idle", 5, "alice")
    save_scanner(conn, Scanner("pair", "manual", symbols=("SYN002", "SYN007")))
    subscribe(conn, "rsi-pair", "rsi_oversold", 25.0, scanner="pair")
    conn.commit()
    strategies, skipped = signal_strategies(conn)
    assert skipped == {"idle": "no subscriptions: no signal reaches it"}
    (strategy,) = strategies
    assert strategy.universe == ("SYN002", "SYN007") and strategy.hold_days == 5
    assert set(strategy.signals["symbol"]) <= {"SYN002", "SYN007"}
    assert (strategy.signals["direction"] == "long").all() and strategy.signals.height > 0

    panel = price_panel(load_bars(conn))
    result = signal_follow_backtest(panel, strategies, SignalCosts())
    assert set(result.trades["symbol"]) <= {"SYN002", "SYN007"} and len(result.trades) > 0
    # Every entry is the open after a signal that reached the strategy, within its holding.
    signal_days = sorted(strategy.signals["ts"].to_list())
    index = list(panel.close.index.date)
    for entry in result.trades["entry_ts"]:
        before = index[index.index(entry) - 1]
        assert any(0 <= index.index(before) - index.index(d) < 5 for d in signal_days)

    run_id = record_backtest(conn, result, panel.start, panel.end, len(panel.symbols), None)
    assert latest_backtest_run(conn, SIGNAL_FOLLOW)[0] == run_id
    with pytest.raises(NotFoundError, match="no sma_cross backtest run"):
        latest_backtest_run(conn)  # validation and allocation never pick up signal runs
    grid = conn.execute("SELECT param_grid FROM backtest_runs WHERE run_id = %s", (run_id,))
    assert grid.fetchone()[0]["rsi-pair"]["subscriptions"] == [
        {"signal_type": "rsi_oversold", "min_confidence": 25.0, "scanner": "pair"}
    ]


def test_signal_strategies_stay_testing_and_names_are_checked(
    conn: psycopg.Connection, stored: SyntheticSource
) -> None:
    config = add_signal_strategy(conn, "breakouts", 10, "alice")
    assert (config.family, config.status, config.include_in_optimization) == (
        SIGNAL_FOLLOW,
        "TESTING",
        False,
    )
    for change in ({"status": "ACTIVE"}, {"include_in_optimization": True}):
        with pytest.raises(ConfigurationError, match="only sma_cross strategies are"):
            update_strategy(conn, "breakouts", "alice", **change)  # type: ignore[arg-type]
    update_strategy(conn, "breakouts", "alice", status="INACTIVE")
    assert get_strategy(conn, "breakouts").status == "INACTIVE"
    with pytest.raises(ConfigurationError, match="already exists"):
        add_signal_strategy(conn, "breakouts", 10, "alice")
    with pytest.raises(ConfigurationError, match="lower case letters"):
        add_signal_strategy(conn, "Bad Name", 10, "alice")
    with pytest.raises(ConfigurationError, match="within 1..252"):
        add_signal_strategy(conn, "zero", 0, "alice")
