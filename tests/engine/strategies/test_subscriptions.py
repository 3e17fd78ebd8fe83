"""Signal subscriptions: which stored signals reach a strategy, point in time."""

import psycopg
import pytest

from engine.data.synthetic import SyntheticSource
from engine.errors import ConfigurationError, NotFoundError
from engine.signals.scanners import Scanner
from engine.signals.store import save_scanner
from engine.strategies.subscriptions import subscribe, subscribed_signals
from tests.helpers import pending_allocation, store_bars_and_signals


@pytest.fixture
def stored(conn: psycopg.Connection) -> SyntheticSource:
    """Synthetic bars with sectors, their signals, and one strategy to subscribe."""
    source = store_bars_and_signals(conn)
    pending_allocation(conn, "a1", {"sma_cross_10_100": 1.0})
    return source


def test_only_matching_signals_reach_a_strategy(
    conn: psycopg.Connection, stored: SyntheticSource
) -> None:
    save_scanner(conn, Scanner("pair", "manual", symbols=("SYN002", "SYN007")))
    subscribe(conn, "sma_cross_10_100", "rsi_oversold", 40.0, scanner="pair")
    subscribe(conn, "sma_cross_10_100", "golden_cross", 0.0)
    reached = subscribed_signals(conn, "sma_cross_10_100")
    rsi = reached.filter(reached["signal_type"] == "rsi_oversold")
    assert set(rsi["symbol"]) <= {"SYN002", "SYN007"} and (rsi["confidence"] >= 40).all()
    stored_rsi = conn.execute(
        "SELECT count(*) FROM signals WHERE signal_type = 'rsi_oversold' AND confidence >= 40 "
        "AND symbol IN ('SYN002', 'SYN007')"
    ).fetchone()[0]
    assert rsi.height == stored_rsi
    golden = conn.execute("SELECT count(*) FROM signals WHERE signal_type = 'golden_cross'")
    assert reached.filter(reached["signal_type"] == "golden_cross").height == golden.fetchone()[0]
    assert set(reached["signal_type"]) <= {"rsi_oversold", "golden_cross"}


def test_subscriptions_refuse_unknown_types_strategies_and_scanners(
    conn: psycopg.Connection, stored: SyntheticSource
) -> None:
    with pytest.raises(ConfigurationError, match="unknown signal type 'moon_phase'"):
        subscribe(conn, "sma_cross_10_100", "moon_phase", 50.0)
    with pytest.raises(NotFoundError, match="strategy 'nope' does not exist"):
        subscribe(conn, "nope", "golden_cross", 50.0)
    with pytest.raises(NotFoundError, match="scanner 'ghost' does not exist"):
        subscribe(conn, "sma_cross_10_100", "golden_cross", 50.0, scanner="ghost")
    with pytest.raises(ConfigurationError, match="within 0..100"):
        subscribe(conn, "sma_cross_10_100", "golden_cross", 150.0)


def test_a_filter_scanner_lets_through_signals_on_days_the_symbol_passed(
    conn: psycopg.Connection, stored: SyntheticSource
) -> None:
    floor = conn.execute(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY close) FROM bars_daily"
    )
    scanner = Scanner("pricey", "filter", min_price=float(floor.fetchone()[0]), window=20)
    save_scanner(conn, scanner)
    subscribe(conn, "sma_cross_10_100", "rsi_oversold", 0.0, scanner="pricey")
    reached = subscribed_signals(conn, "sma_cross_10_100")
    # Independently: the 20-bar average close up to each signal's day, in SQL.
    expected = conn.execute(
        """WITH averaged AS (
               SELECT symbol, ts, avg(close) OVER w AS price, count(*) OVER w AS n
               FROM bars_daily
               WINDOW w AS (PARTITION BY symbol ORDER BY ts ROWS 19 PRECEDING))
           SELECT s.symbol, s.ts FROM signals s JOIN averaged a USING (symbol, ts)
           WHERE s.signal_type = 'rsi_oversold' AND a.n = 20 AND a.price >= %s
           ORDER BY s.ts, s.symbol""",
        (scanner.min_price,),
    ).fetchall()
    assert list(reached.select("symbol", "ts").iter_rows()) == expected
    assert (
        0
        < len(expected)
        < conn.execute(
            "SELECT count(*) FROM signals WHERE signal_type = 'rsi_oversold'"
        ).fetchone()[0]
    )
