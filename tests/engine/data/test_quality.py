from datetime import date, timedelta
from pathlib import Path

import polars as pl

from engine.data.quality import GateSettings, _path_rules, _walk, check_bars
from engine.data.sources import BAR_SCHEMA


def _bars(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(
        [(*r, "test", f"row {i + 1}") for i, r in enumerate(rows)],
        schema=BAR_SCHEMA,
        orient="row",
    )


def test_each_rule_flags_its_row_and_keeps_the_rest() -> None:
    d1, d2 = date(2024, 1, 2), date(2024, 1, 3)
    bars = _bars(
        [
            ("OK", d1, 10.0, 11.0, 9.0, 10.5, 10.5, 100),
            ("HILO", d1, 10.0, 9.0, 9.5, 9.8, 9.8, 100),  # high below low and open
            ("ZERO", d1, 0.0, 1.0, 0.0, 1.0, 1.0, 100),
            ("NAN", d1, float("nan"), 11.0, 9.0, 10.0, 10.0, 100),
            ("INF", d1, 10.0, float("inf"), 9.0, 10.0, 10.0, 100),
            ("NEGV", d1, 10.0, 11.0, 9.0, 10.0, 10.0, -5),
            ("DUP", d2, 10.0, 11.0, 9.0, 10.0, 10.0, 100),
            ("DUP", d2, 10.0, 11.0, 9.0, 10.1, 10.1, 100),
        ]
    )
    report = check_bars(bars)
    assert report.clean["symbol"].to_list() == ["OK"]
    assert {rule: n for rule, n in report.counts_by_rule().items() if n} == {
        "prices_positive": 3,
        "ohlc_consistent": 1,
        "volume_non_negative": 1,
        "unique_symbol_ts": 2,
    }
    hilo = report.violations.filter(pl.col("symbol") == "HILO")
    assert hilo["rule"].to_list() == ["ohlc_consistent"]
    assert "high=9.0" in hilo["reason"][0] and hilo["origin"][0] == "row 2"
    assert not report.passed


def _path(
    prices: list[float], start: date = date(2024, 3, 1), symbol: str = "X", spread: float = 0.01
) -> pl.DataFrame:
    days = [d for d in (start + timedelta(days=i) for i in range(60)) if d.weekday() < 5]
    rows = [
        (symbol, d, p, p * (1 + spread), p * (1 - spread), p, p, 100)
        for d, p in zip(days, prices, strict=False)
    ]
    return _bars(rows)


def test_a_print_that_leaves_and_comes_back_is_the_spike_not_the_recovery() -> None:
    report = check_bars(_path([62.0, 61.5, 18.9, 61.0, 62.5]))
    spikes = report.violations.filter(pl.col("rule") == "spike")
    assert spikes["close"].to_list() == [18.9]
    assert "left 61.5 for 18.9 (-69.3%) and came back to 61" in spikes["reason"][0]
    assert report.clean["close"].to_list() == [62.0, 61.5, 61.0, 62.5]


def test_a_move_that_stays_is_kept_under_the_limit_and_held_back_over_it() -> None:
    kept = check_bars(_path([10.0, 10.2, 15.5, 15.4, 15.6]))  # +52%, like AMD in 2016
    assert kept.passed
    split = check_bars(_path([100.0] * 30 + [20.0, 20.2, 19.9]))  # 5:1, no action explains it
    held = split.violations.filter(pl.col("rule") == "extreme_move")
    assert held["close"].to_list() == [20.0, 20.2, 19.9]  # held until a person or an action
    assert "moved -80.0% from 100 to 20 and did not come back" in held["reason"][0]


def test_a_short_run_at_a_level_the_series_never_returns_to_is_held_back_not_the_rest() -> None:
    report = check_bars(_path([11.9, 11.96, 11.5, 70.0, 69.5, 70.2, 68.9]))  # BHF in 2017
    held = report.violations.filter(pl.col("rule") == "extreme_move")
    assert held["close"].to_list() == [11.9, 11.96, 11.5]
    assert report.clean["close"].to_list() == [70.0, 69.5, 70.2, 68.9]


def test_stale_prices_and_placeholder_prints_are_held_back() -> None:
    frozen = check_bars(_path([44.0, 45.0, *[44.5] * 7, 44.9], spread=0.0))
    stale = frozen.violations.filter(pl.col("rule") == "stale_price")
    assert stale.height == 6  # the price first seen is real, its repeats are not
    assert check_bars(_path([0.006, 0.002, 0.006])).counts_by_rule()["min_price"] == 3
    assert check_bars(_path([0.006, 0.002]), settings=GateSettings(min_price=0.001)).passed


def test_history_judges_the_first_row_of_a_batch() -> None:
    history = _path([62.0, 62.5], symbol="COL")
    batch = _path([18.9, 61.8], start=date(2024, 3, 5), symbol="COL")
    report = check_bars(batch, history.drop("origin"))
    assert report.violations.select("ts", "rule").rows() == [(date(2024, 3, 5), "spike")]
    retracted = check_bars(
        _path([61.0], start=date(2024, 3, 6), symbol="COL"),
        _path([62.0, 62.5, 18.9], symbol="COL").drop("origin"),
    ).retracted
    assert retracted.select("ts", "rule").rows() == [(date(2024, 3, 5), "spike")]


def test_symbols_that_never_leave_the_path_are_not_walked_and_nothing_changes(
    real_prices: Path,
) -> None:
    """The path rules walk only symbols with a step past spike_threshold or a flat row; on the
    real prices (bad prints included) they flag exactly what walking every symbol flags."""
    raw = (
        pl.read_parquet(real_prices)
        .rename({"date": "ts"})
        .with_columns(pl.col("ts").cast(pl.Date), pl.col("volume").cast(pl.Int64))
        .unique(subset=["symbol", "ts"], keep="first")
        .filter(pl.all_horizontal(pl.col(c) > 0 for c in ("open", "high", "low", "close")))
        .filter(pl.col("adj_close") > 0)
    )
    cut = date(2019, 6, 3)
    batch = raw.filter(pl.col("ts") >= cut).with_row_index("_row")
    history = raw.filter(pl.col("ts") < cut).sort("ts").group_by("symbol").tail(7)
    released = frozenset(
        {(str(s), d) for s, d in batch.sample(50, seed=1)[["symbol", "ts"]].rows()}
    )
    settings = GateSettings()
    flags, retracted = _path_rules(batch, history, settings, released)

    everyone = pl.concat(
        [history.with_columns(pl.lit(None, dtype=pl.UInt32).alias("_row")), batch],
        how="diagonal",
    ).sort("symbol", "ts")
    walked, gone = [], []
    for (symbol,), rows in everyone.group_by("symbol", maintain_order=True):
        for i, rule, reason in _walk(rows, settings, released, str(symbol)):
            row = rows["_row"][i]
            if row is None:
                gone.append((str(symbol), rows["ts"][i], rule, reason))
            else:
                walked.append((int(row), rule, reason))
    assert walked and gone  # the real prices do leave the path
    assert sorted(flags) == sorted(walked)
    assert sorted(retracted.rows()) == sorted(gone)
