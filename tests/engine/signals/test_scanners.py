import polars as pl
import psycopg
import pytest

from engine.data.read_store import load_bars
from engine.data.synthetic import SyntheticSource
from engine.errors import ConfigurationError
from engine.signals.scanners import Scanner, resolve
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
