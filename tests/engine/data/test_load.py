"""Loads of daily bars into the test database, on crafted files and on the real data: the gate
against stored history, what blocks and what is held back, versions, one dataset per database,
adjusted prices derived from corporate actions."""

from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import psycopg
import pytest

from engine.data.calendar import trading_days
from engine.data.load import DatasetError, load_daily_bars
from engine.data.read_store import load_bars
from engine.data.sources import BAR_SCHEMA, CORPORATE_ACTION_SCHEMA, LocalFileSource
from engine.data.store import require_clean_bars
from engine.data.synthetic import SyntheticSource
from engine.errors import QualityGateError
from engine.signals.prices import price_panel
from engine.signals.scans import scan_universe
from tests.conftest import SHARED_DATA, write_bars_csv

DAYS = trading_days(date(2024, 3, 1), date(2024, 3, 28))


def _rows(symbols: list[str], days: list[date], price: float = 50.0) -> list[tuple]:
    return [
        (s, d.isoformat(), price, price + 1, price - 1, price, price, 1000)
        for s in symbols
        for d in days
    ]


def _load(conn: psycopg.Connection, path: Path, start: date, end: date):  # noqa: ANN202
    load = load_daily_bars(conn, LocalFileSource(str(path)), start, end)
    conn.commit()
    return load


def _stored(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        "SELECT symbol, ts, open, high, low, close, adj_close, volume FROM bars_daily "
        "ORDER BY symbol, ts"
    ).fetchall()


def test_a_spike_is_judged_against_stored_history_and_retracted_when_it_reverts(
    conn: psycopg.Connection, tmp_path: Path
) -> None:
    # COL's real pattern, loaded one day at a time: 62, then 18.9, then 61.
    days = DAYS[:3]
    path = tmp_path / "col.csv"
    for day, price in zip(days, (62.0, 18.9, 61.0), strict=True):
        write_bars_csv(
            path, [("COL", day.isoformat(), price, price + 0.5, price - 0.5, price, price, 10)]
        )
        assert _load(conn, path, day, day).passed
    stored = conn.execute("SELECT ts, close FROM bars_daily ORDER BY ts").fetchall()
    assert stored == [(days[0], 62.0), (days[2], 61.0)]  # the print that left and came back
    held = conn.execute("SELECT ts, rule, reason, origin FROM quarantine_bars").fetchall()
    assert [(ts, rule) for ts, rule, _, _ in held] == [(days[1], "spike")]
    assert "came back to 61" in held[0][2] and "retracted by load 3" in held[0][3]
    version = conn.execute("SELECT ts, close, replaced_by FROM bar_versions").fetchall()
    assert version == [(days[1], 18.9, "load 3")]


def test_rows_off_the_calendar_refuse_the_load_and_nothing_is_stored(
    conn: psycopg.Connection, tmp_path: Path
) -> None:
    symbols = [f"S{i:02d}" for i in range(5)]
    good = write_bars_csv(tmp_path / "good.csv", _rows(symbols, DAYS[:5]))
    assert _load(conn, good, DAYS[0], DAYS[4]).passed
    before = _stored(conn)
    saturday = DAYS[4] + timedelta(days=(5 - DAYS[4].weekday()) % 7)
    bad = write_bars_csv(tmp_path / "bad.csv", _rows(symbols, [*DAYS[5:7], saturday]))
    load = _load(conn, bad, DAYS[5], saturday)
    assert not load.passed
    assert load.reasons == [f"5 rows dated off the NYSE calendar ({saturday})"]
    assert _stored(conn) == before
    with pytest.raises(QualityGateError, match="off the NYSE calendar"):
        require_clean_bars(conn)


def test_completeness_is_judged_against_the_universe_not_the_file(
    conn: psycopg.Connection, tmp_path: Path
) -> None:
    universe = [f"S{i:02d}" for i in range(20)]
    assert _load(
        conn, write_bars_csv(tmp_path / "all.csv", _rows(universe, DAYS[:5])), DAYS[0], DAYS[4]
    ).passed
    three = write_bars_csv(tmp_path / "three.csv", _rows(universe[:3], DAYS[5:6]))
    load = _load(conn, three, DAYS[5], DAYS[5])
    assert load.reasons == [f"{DAYS[5]}: 17 of 20 symbols missing or held back (85% > 10%)"]
    one_missing = write_bars_csv(tmp_path / "nineteen.csv", _rows(universe[1:], DAYS[5:6]))
    load = _load(conn, one_missing, DAYS[5], DAYS[5])
    assert load.passed  # a halt or a delisting is a reported gap
    assert load.gaps.rows() == [("S00", DAYS[5], DAYS[5], 1)]


def test_a_header_only_load_of_a_stored_range_fails_and_research_stays_closed(
    conn: psycopg.Connection, tmp_path: Path
) -> None:
    universe = ["AAA", "BBB", "CCC"]
    rows = _rows(universe, DAYS[:5])
    rows[7] = ("BBB", DAYS[2].isoformat(), 50.0, 49.0, 51.0, 50.0, 50.0, 10)  # high below low
    assert _load(conn, write_bars_csv(tmp_path / "bars.csv", rows), DAYS[0], DAYS[4]).passed
    (tmp_path / "empty.csv").write_text("symbol,date,open,high,low,close,adj_close,volume\n")
    load = _load(conn, tmp_path / "empty.csv", DAYS[0], DAYS[4])
    assert not load.passed and "no bar for any day of the range" in load.reasons
    with pytest.raises(QualityGateError):
        require_clean_bars(conn)
    assert conn.execute("SELECT count(*) FROM bars_daily").fetchone()[0] == 14


def test_a_failed_load_changes_nothing_and_a_changed_bar_keeps_its_version(
    conn: psycopg.Connection, tmp_path: Path
) -> None:
    universe = ["AAA", "BBB"]
    assert _load(
        conn, write_bars_csv(tmp_path / "v1.csv", _rows(universe, DAYS[:3])), DAYS[0], DAYS[2]
    ).passed
    before = _stored(conn)
    changed = _rows(universe, DAYS[:3])
    changed[1] = ("AAA", DAYS[1].isoformat(), 50.0, 86.64, 49.0, 50.0, 50.0, 1000)  # high restated
    saturday = DAYS[2] + timedelta(days=(5 - DAYS[2].weekday()) % 7)
    refused = changed + [("AAA", saturday.isoformat(), 50.0, 51.0, 49.0, 50.0, 50.0, 1)]
    assert not _load(conn, write_bars_csv(tmp_path / "bad.csv", refused), DAYS[0], saturday).passed
    assert _stored(conn) == before  # the failed load rewrote nothing
    assert _load(conn, write_bars_csv(tmp_path / "v2.csv", changed), DAYS[0], DAYS[2]).passed
    high = conn.execute("SELECT high FROM bars_daily WHERE symbol = 'AAA' AND ts = %s", (DAYS[1],))
    assert high.fetchone()[0] == 86.64
    versions = conn.execute("SELECT symbol, ts, high, replaced_by FROM bar_versions").fetchall()
    assert versions == [("AAA", DAYS[1], 51.0, "load 3")]
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
        conn.execute("DELETE FROM bar_versions")


def test_one_dataset_per_database(conn: psycopg.Connection, tmp_path: Path) -> None:
    load_daily_bars(conn, SyntheticSource(n_symbols=3, seed=1), DAYS[0], DAYS[4])
    conn.commit()
    path = write_bars_csv(tmp_path / "bars.csv", _rows(["AAA"], DAYS[:3]))
    with pytest.raises(
        DatasetError, match=r"holds the dataset of synthetic\(seed=1, n_symbols=3\)"
    ):
        load_daily_bars(conn, LocalFileSource(str(path)), DAYS[0], DAYS[2])
    conn.rollback()
    assert conn.execute("SELECT DISTINCT source FROM bars_daily").fetchall() == [("synthetic",)]


@dataclass
class SplittingVendor:
    """A vendor that reports raw prices and its corporate actions (as Polygon does): SPLT splits
    4:1 on ``split_day``; the action is reported with the day's load."""

    split_day: date
    name: str = "vendor"
    frame: pl.DataFrame = field(init=False)

    def __post_init__(self) -> None:
        synthetic = SyntheticSource(n_symbols=3, seed=11).daily_bars(
            date(2022, 1, 1), date(2024, 3, 28)
        )
        raw = synthetic.with_columns(
            pl.when(pl.col("ts") >= self.split_day)
            .then(pl.col(c) / 4)
            .otherwise(pl.col(c))
            .alias(c)
            for c in ("open", "high", "low", "close", "adj_close")
        ).with_columns(
            pl.when(pl.col("ts") >= self.split_day)
            .then(pl.col("volume") * 4)
            .otherwise("volume")
            .alias("volume"),
            pl.col("symbol").str.replace("SYN000", "SPLT"),
        )
        self.frame = raw

    def daily_bars(self, start: date, end: date, failures: dict | None = None) -> pl.DataFrame:
        return self.frame.filter(pl.col("ts").is_between(start, end)).select(list(BAR_SCHEMA))

    def corporate_actions(self, start: date, end: date) -> pl.DataFrame:
        rows = [("SPLT", self.split_day, "split", 4.0, None, self.name)]
        frame = pl.DataFrame(rows, schema=CORPORATE_ACTION_SCHEMA, orient="row")
        return frame.filter(pl.col("ex_date").is_between(start, end))

    def sectors(self) -> dict[str, str]:
        return {}


def test_a_split_after_two_years_of_history_leaves_no_jump_and_every_earlier_signal_unchanged(
    conn: psycopg.Connection,
) -> None:
    split_day = date(2024, 3, 20)
    vendor = SplittingVendor(split_day)
    assert load_daily_bars(conn, vendor, date(2022, 1, 3), date(2024, 3, 19)).passed
    conn.commit()
    signals_before = scan_universe(price_panel(load_bars(conn))).signals
    load = load_daily_bars(conn, vendor, split_day, date(2024, 3, 28))
    conn.commit()
    assert load.passed and load.readjusted == ["SPLT"]
    bars = load_bars(conn).filter(pl.col("symbol") == "SPLT").sort("ts")
    moves = (bars["adj_close"] / bars["adj_close"].shift(1) - 1).drop_nulls().abs()
    assert moves.max() < 0.2  # no 75% split jump in the adjusted series
    raw_move = bars.filter(pl.col("ts").is_in([date(2024, 3, 19), split_day]))["close"]
    assert raw_move[1] / raw_move[0] < 0.3  # the raw series keeps the split
    signals_after = scan_universe(price_panel(load_bars(conn))).signals
    earlier = pl.col("ts") < date(2024, 3, 19)  # the last day of the first load is its edge
    key = ["symbol", "ts", "signal_type", "direction"]
    before = signals_before.filter(earlier).sort(key)
    after = signals_after.filter(earlier).sort(key)
    assert before.select(key).equals(after.select(key))
    assert (before["confidence"] - after["confidence"]).abs().max() < 1e-6  # type: ignore[operator]


def test_the_real_data_loads_with_every_adjusted_move_explained(
    conn: psycopg.Connection, real_prices: Path
) -> None:
    source = LocalFileSource(str(real_prices), str(SHARED_DATA / "sectors.csv"))
    load = load_daily_bars(conn, source, date(2015, 1, 1), date(2020, 12, 31))
    conn.commit()
    assert load.passed, load.reasons
    counts = {rule: n for rule, n in load.quality.counts_by_rule().items() if n}
    # The zero-price CBS row, three highs below the open or close, three duplicated (symbol, day)
    # pairs, BHF's and SCG's placeholder prints under 5 cents, six BHF rows at 11-12 dollars
    # before it trades at 70, CA's and COL's prints that leave and come back, and the frozen
    # prices of CA, EVHC and COL after they stopped trading.
    assert counts == {
        "prices_positive": 1,
        "ohlc_consistent": 3,
        "unique_symbol_ts": 6,
        "min_price": 178,
        "spike": 7,
        "extreme_move": 6,
        "stale_price": 144,
    }
    stored = load_bars(conn).sort("symbol", "ts")
    moves = stored.with_columns(
        (pl.col("adj_close") / pl.col("adj_close").shift(1).over("symbol") - 1).abs().alias("m")
    )
    assert moves["m"].max() <= 0.75  # type: ignore[operator]
    assert stored.filter(pl.col("symbol") == "AMD", pl.col("ts") == date(2016, 4, 22)).height == 1
