from datetime import date
from pathlib import Path

import polars as pl

from engine.data.quality import check_bars
from engine.data.sources import BAR_SCHEMA, LocalFileSource


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
            ("NEGV", d1, 10.0, 11.0, 9.0, 10.0, 10.0, -5),
            ("DUP", d2, 10.0, 11.0, 9.0, 10.0, 10.0, 100),
            ("DUP", d2, 10.0, 11.0, 9.0, 10.1, 10.1, 100),
        ]
    )
    report = check_bars(bars)
    assert report.clean["symbol"].to_list() == ["OK"]
    assert report.counts_by_rule() == {
        "prices_positive": 2,
        "ohlc_consistent": 1,
        "volume_non_negative": 1,
        "unique_symbol_ts": 2,
    }
    hilo = report.violations.filter(pl.col("symbol") == "HILO")
    assert hilo["rule"].to_list() == ["ohlc_consistent"]
    assert "high=9.0" in hilo["reason"][0] and hilo["origin"][0] == "row 2"
    assert not report.passed


def test_real_data_quirks_are_flagged_not_crashed_on(real_prices: Path) -> None:
    bars = LocalFileSource(str(real_prices)).daily_bars(date(2015, 1, 1), date(2020, 12, 31))
    report = check_bars(bars)
    counts = report.counts_by_rule()
    # The real file has a zero-price row, three rows with high below open or close and three
    # duplicated (symbol, day) pairs; zero-volume days are legitimate and pass.
    assert counts == {
        "prices_positive": 1,
        "ohlc_consistent": 3,
        "volume_non_negative": 0,
        "unique_symbol_ts": 6,
    }
    assert report.clean.height == bars.height - report.violations["origin"].n_unique()
    assert report.clean.filter(pl.col("volume") == 0).height > 0
