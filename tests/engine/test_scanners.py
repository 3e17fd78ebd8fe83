import polars as pl
import psycopg
import pytest

from engine.data.sources import SyntheticSource
from engine.errors import ConfigurationError, NotFoundError
from engine.signals.scanners import Scanner, resolve
from engine.storage.repositories import (
    load_bars,
    save_scanner,
    subscribe,
    subscribed_signals,
)
from tests.helpers import pending_allocation, store_bars_and_signals


@pytest.fixture
def stored(conn: psycopg.Connection) -> SyntheticSource:
    """Synthetic bars with sectors, their signals, and one strategy to subscribe."""
    source = store_bars_and_signals(conn)
    pending_allocation(conn, "a1", {"sma_cross_10_100": 1.0})
    return source


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Bad Name", "kind": "manual", "symbols": ("AAA",)}, "lower case"),
        ({"name": "m", "kind": "manual", "symbols": ("x;drop",)}, "are not symbols"),
        ({"name": "s", "kind": "sector"}, "needs sectors"),
        ({"name": "f", "kind": "filter"}, "needs at least one limit"),
        ({"name": "f", "kind": "filter", "min_price": -1.0}, "must be >= 0"),
    ],
)
def test_bad_scanners_are_refused_with_the_reason(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Scanner(**kwargs)


def test_each_kind_of_scanner_selects_its_symbols(
    conn: psycopg.Connection, stored: SyntheticSource
) -> None:
    sectors = stored.sectors()
    bars = load_bars(conn)
    manual = Scanner("mine", "manual", symbols=("SYN001", "SYN004", "NOPE"))
    assert resolve(manual, sectors, bars) == (["SYN001", "SYN004"], ["NOPE"])
    energy = Scanner("energy", "sector", sectors=("Energy",))
    assert resolve(energy, sectors, bars)[0] == sorted(
        s for s, x in sectors.items() if x == "Energy"
    )
    recent = bars.sort("symbol", "ts").group_by("symbol").tail(20)
    mean_close = dict(recent.group_by("symbol").agg(pl.col("close").mean()).iter_rows())
    price_floor = sorted(mean_close.values())[len(mean_close) // 2]
    chosen, _ = resolve(Scanner("liquid", "filter", min_price=price_floor), sectors, bars)
    expected = sorted(s for s, mean in mean_close.items() if mean >= price_floor)
    assert chosen == expected and 0 < len(chosen) < 10


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
