"""The research run's scan after the first: only the new sessions, the same events as a scan of
the whole window (real prices, a real database)."""

import json
import threading
from datetime import date
from pathlib import Path

import polars as pl
import psycopg
import pytest

from engine.data.load import load_daily_bars
from engine.data.read_store import bars_at_rest, bars_written, earliest_written, load_bars
from engine.data.sources import LocalFileSource
from engine.data.store import write_daily_bars
from engine.signals.incremental import plan_scan, scan_research_window, scan_shard, store_scan
from engine.signals.prices import load_research_prices
from engine.signals.scans import scan_universe
from tests.conftest import SHARED_DATA
from tests.helpers import store_synthetic_bars

KEY = ["symbol", "ts", "signal_type", "direction", "params", "data_start", "data_end"]
START = date(2018, 1, 2)


def _load(conn: psycopg.Connection, source: LocalFileSource, start: date, end: date) -> None:
    assert load_daily_bars(conn, source, start, end).passed
    conn.commit()


def _stored(conn: psycopg.Connection) -> pl.DataFrame:
    rows = conn.execute(
        """SELECT symbol, ts, signal_type, direction, params::text, data_start, data_end,
                  confidence FROM signals"""
    ).fetchall()
    return pl.DataFrame(rows, schema=[*KEY, "confidence"], orient="row").sort(KEY)


def _same_params(signals: pl.DataFrame) -> pl.DataFrame:
    """params as one JSON text (the database keeps its own key order)."""
    return signals.with_columns(
        pl.col("params").map_elements(
            lambda text: json.dumps(json.loads(text), sort_keys=True), return_dtype=pl.String
        )
    )


@pytest.fixture
def source(real_prices: Path) -> LocalFileSource:
    return LocalFileSource(str(real_prices), str(SHARED_DATA / "sectors.csv"))


def test_daily_scans_store_what_one_scan_of_the_whole_window_finds(
    conn: psycopg.Connection, source: LocalFileSource
) -> None:
    _load(conn, source, START, date(2019, 11, 29))
    first = scan_research_window(conn, START, None, None)
    assert first.how.startswith("the whole window: no scan stored yet")
    assert first.scanned_from == date(2018, 1, 2)
    # Then session by session, as the daily schedule loads them (a month end among them).
    for day in (date(2019, 12, 2), date(2019, 12, 3), date(2019, 12, 4)):
        _load(conn, source, day, day)
        daily = scan_research_window(conn, START, None, None)
        assert daily.how.startswith("the sessions after"), daily.how
        assert daily.scanned_from == day and daily.data_end == day
        assert daily.data_start == first.data_start
    again = scan_research_window(conn, START, None, None)
    assert again.scanned_from is None and again.written == 0

    whole = _same_params(scan_universe(load_research_prices(conn, START)).signals).sort(KEY)
    stored = _same_params(_stored(conn)).sort(KEY)
    assert whole.select(KEY).equals(stored.select(KEY))
    diff = (whole["confidence"] - stored["confidence"]).abs().max()
    assert diff is not None and diff < 1e-9  # rolling sums started elsewhere: last-bit noise
    assert stored.filter(pl.col("ts") == date(2019, 12, 4)).height > 0


def test_a_scan_in_symbol_shards_stores_what_one_scan_finds(
    conn: psycopg.Connection, source: LocalFileSource
) -> None:
    """The fanned-out scan (assets/scans.py): symbols scanned apart, in any grouping, on the
    universe's sessions; momentum ranked across all of them when the shards are stored."""
    _load(conn, source, START, date(2019, 11, 29))
    plan = plan_scan(conn, START, None, None)
    assert plan.after is None and len(plan.symbols) > 400
    # Uneven shards, each with symbols from all over the universe, one empty.
    shards = [plan.symbols[i::5] for i in range(5)] + [[]]
    run = store_scan(conn, plan, [scan_shard(conn, plan, s) for s in shards])
    whole = scan_universe(load_research_prices(conn, START)).signals
    assert run.written == whole.height
    assert _same_params(_stored(conn)).equals(
        _same_params(whole.select(*KEY, "confidence")).sort(KEY)
    )
    assert whole.filter(pl.col("signal_type") == "momentum_top").height > 0

    day = date(2019, 12, 2)
    _load(conn, source, day, day)
    plan = plan_scan(conn, START, None, None)
    assert plan.after == date(2019, 11, 29) and plan.new_days == [day]
    daily = store_scan(
        conn, plan, [scan_shard(conn, plan, s) for s in (plan.symbols[::2], plan.symbols[1::2])]
    )
    alone = scan_research_window(conn, START, None, None)  # nothing new: the same plan, unsharded
    assert alone.scanned_from is None
    whole = _same_params(scan_universe(load_research_prices(conn, START)).signals).sort(KEY)
    stored = _same_params(_stored(conn)).sort(KEY)
    assert daily.scanned_from == day and stored.filter(pl.col("ts") == day).height > 0
    assert whole.select(KEY).equals(stored.select(KEY))
    diff = (whole["confidence"] - stored["confidence"]).abs().max()
    assert diff is not None and diff < 1e-9


def test_a_daily_scan_does_not_take_its_last_session_for_a_month_end(
    conn: psycopg.Connection, source: LocalFileSource
) -> None:
    _load(conn, source, START, date(2019, 11, 27))
    scan_research_window(conn, START, None, None)
    _load(conn, source, date(2019, 11, 29), date(2019, 11, 29))  # the month's last session
    scan_research_window(conn, START, None, None)
    _load(conn, source, date(2019, 12, 2), date(2019, 12, 2))
    scan_research_window(conn, START, None, None)
    momentum = _stored(conn).filter(pl.col("signal_type").str.starts_with("momentum"))
    days = set(momentum["ts"].to_list())
    assert date(2019, 11, 29) in days and date(2019, 10, 31) in days
    # Before: the scan's last day was always a month end, so every daily run ranked momentum.
    assert not days & {date(2019, 11, 27), date(2019, 12, 2)}


def test_a_changed_bar_in_the_scanned_history_is_scanned_again_from_its_day(
    conn: psycopg.Connection, source: LocalFileSource
) -> None:
    _load(conn, source, START, date(2019, 6, 28))
    scan_research_window(conn, START, None, None)
    before = bars_written(conn, START, None, None)
    bar = load_bars(conn, date(2019, 3, 1), date(2019, 3, 1), ["AAPL"])
    corrected = bar.with_columns(
        (pl.col("close") * 1.01).alias("close"), pl.lit(1.0).alias("volume_factor")
    )
    write_daily_bars(conn, corrected, "person: test")
    conn.commit()
    assert bars_written(conn, START, None, None) != before  # an update restamps the bar
    _load(conn, source, date(2019, 7, 1), date(2019, 7, 1))
    run = scan_research_window(conn, START, None, None)
    assert run.how.startswith("from 2019-03-01: the earliest stored bar written"), run.how
    assert run.scanned_from == date(2019, 3, 1) and run.data_end == date(2019, 7, 1)
    whole = _same_params(scan_universe(load_research_prices(conn, START)).signals).sort(KEY)
    stored = _same_params(_stored(conn)).sort(KEY)
    # What changed at AAPL on 2019-03-01 is in the stored events from then on.
    assert whole.select(KEY).equals(stored.select(KEY))


def test_a_scan_counts_the_bars_when_no_write_is_in_flight(
    conn: psycopg.Connection, db: str
) -> None:
    store_synthetic_bars(conn, date(2023, 1, 1), date(2023, 3, 31))
    bar = load_bars(conn, date(2023, 3, 1), date(2023, 3, 1)).head(1)
    with psycopg.connect(db) as writer:
        write_daily_bars(  # a person's correction, not committed yet
            writer,
            bar.with_columns(pl.col("close") * 1.01, pl.lit(1.0).alias("volume_factor")),
            "person: test",
        )
        counted: list = []
        counting = threading.Thread(target=lambda: counted.append(bars_at_rest(conn)))
        counting.start()
        counting.join(1.0)
        assert counting.is_alive()  # waits for the write in flight
        writer.commit()
    counting.join(10)
    ((as_of, bars),) = counted
    # Counted after the correction: it is in the count, stamped before the moment.
    assert bars == bars_written(conn)
    assert earliest_written(conn, as_of, None, None, None) is None
    # Undone after the moment: found.
    write_daily_bars(conn, bar.with_columns(pl.lit(1.0).alias("volume_factor")), "person: test")
    conn.commit()
    assert earliest_written(conn, as_of, None, None, None) == date(2023, 3, 1)


def test_an_event_a_corrected_bar_no_longer_makes_is_removed(
    conn: psycopg.Connection, source: LocalFileSource
) -> None:
    _load(conn, source, START, date(2019, 6, 28))
    scan_research_window(conn, START, None, None)
    spike = conn.execute(
        """SELECT symbol, ts FROM signals WHERE signal_type = 'volume_spike_up'
             AND ts > '2019-03-01' ORDER BY ts, symbol LIMIT 1"""
    ).fetchone()
    assert spike is not None
    symbol, day = spike
    bar = load_bars(conn, day, day, [symbol])
    write_daily_bars(  # the vendor's volume was ten times too high that day
        conn,
        bar.with_columns(pl.col("volume") // 10, pl.lit(1.0).alias("volume_factor")),
        "person: test",
    )
    conn.commit()
    run = scan_research_window(conn, START, None, None)
    assert run.scanned_from == day, run.how
    stored = _stored(conn)
    assert stored.filter(
        (pl.col("symbol") == symbol)
        & (pl.col("ts") == day)
        & (pl.col("signal_type") == "volume_spike_up")
    ).is_empty()
    whole = _same_params(scan_universe(load_research_prices(conn, START)).signals).sort(KEY)
    assert whole.select(KEY).equals(_same_params(stored).sort(KEY).select(KEY))
