"""The synthetic source: calibrated to real daily equities, seeded defects, range invariance."""

from datetime import date

import numpy as np
import pandas as pd
import polars as pl
import pytest

from engine.data import synthetic
from engine.data.calendar import trading_days
from engine.data.sources import BAR_SCHEMA
from engine.data.synthetic import SyntheticSource

DEFECT_RATES = ("HALT_RATE", "BAD_PRINT_RATE", "ZERO_PRICE_RATE", "HIGH_BELOW_CLOSE_RATE")
FIVE_YEARS = (date(2015, 1, 2), date(2019, 12, 31))
TEN_YEARS = (date(2015, 1, 2), date(2024, 12, 31))


def _true_bars(
    monkeypatch: pytest.MonkeyPatch, source: SyntheticSource, start: date, end: date
) -> pl.DataFrame:
    """The same source's bars without its defects (they never change the true prices)."""
    with monkeypatch.context() as patch:
        for rate in DEFECT_RATES:
            patch.setattr(synthetic, rate, 0.0)
        return source.daily_bars(start, end)


def _returns(bars: pl.DataFrame) -> pd.DataFrame:
    wide = bars.to_pandas().pivot(index="ts", columns="symbol", values="adj_close")
    return np.log(wide).diff().iloc[1:]


def _kurtosis(x: np.ndarray) -> float:
    x = x - x.mean()
    return float((x**4).mean() / (x**2).mean() ** 2)


def _autocorrelation(x: np.ndarray, lag: int) -> float:
    x = x - x.mean()
    return float((x[lag:] * x[:-lag]).sum() / (x * x).sum())


@pytest.fixture(scope="module", params=[1, 2])
def calibration(request: pytest.FixtureRequest) -> tuple[SyntheticSource, pl.DataFrame]:
    """A hundred symbols over five years, without defects (as the real data once cleaned)."""
    source = SyntheticSource(n_symbols=100, seed=request.param)
    with pytest.MonkeyPatch.context() as patch:
        for rate in DEFECT_RATES:
            patch.setattr(synthetic, rate, 0.0)
        return source, source.daily_bars(*FIVE_YEARS)


def test_volatility_and_drift_are_those_of_real_large_caps(
    calibration: tuple[SyntheticSource, pl.DataFrame],
) -> None:
    # Real (467 US large caps, 2015-2020): median annualized volatility 0.245 (p10 0.18, p90
    # 0.37), equal-weight market 0.136, median log return 9.7% a year.
    _, bars = calibration
    returns = _returns(bars)
    vol = returns.std() * np.sqrt(252)
    assert 0.21 <= vol.median() <= 0.29
    assert vol.quantile(0.1) >= 0.13 and vol.quantile(0.9) <= 0.45
    assert vol.quantile(0.9) / vol.quantile(0.1) > 1.5  # stocks differ (real: 2.0)
    assert 0.10 <= returns.mean(axis=1).std() * np.sqrt(252) <= 0.19
    assert -0.10 <= returns.mean().median() * 252 <= 0.25
    # No trend to follow: daily returns are not autocorrelated (real median -0.003).
    assert abs(np.median([_autocorrelation(returns[s].to_numpy(), 1) for s in returns])) < 0.03


def test_returns_have_fat_tails_and_volatility_clusters(
    calibration: tuple[SyntheticSource, pl.DataFrame],
) -> None:
    # Real: kurtosis median 8.7 per stock; autocorrelation of squared returns at lag 1 median
    # 0.069 per stock, 0.26 for the equal-weight market.
    _, bars = calibration
    returns = _returns(bars)
    kurtosis = [_kurtosis(returns[s].to_numpy()) for s in returns]
    assert np.median(kurtosis) > 5
    squared = [_autocorrelation(returns[s].to_numpy() ** 2, 1) for s in returns]
    assert 0.02 < np.median(squared) < 0.2
    market = returns.mean(axis=1).to_numpy()
    assert _autocorrelation(market**2, 1) > 0.05
    assert _kurtosis(market) > 3.5


def test_stocks_correlate_more_within_a_sector_than_across(
    calibration: tuple[SyntheticSource, pl.DataFrame],
) -> None:
    # Real: 0.27 across sectors; within a sector 0.42 (0.35 Health Care .. 0.57 Financials).
    source, bars = calibration
    returns = _returns(bars)
    corr = returns.corr().to_numpy()
    sector = np.array([source.sectors()[s] for s in returns.columns])
    upper = np.triu_indices(len(sector), 1)
    same = (sector[:, None] == sector[None, :])[upper]
    within, across = corr[upper][same].mean(), corr[upper][~same].mean()
    assert 0.18 <= across <= 0.38
    assert within > across + 0.08
    by_sector = {
        name: corr[upper][same & (sector[upper[0]] == name)].mean() for name in synthetic.SECTORS
    }
    assert by_sector["Financials"] > by_sector["Health Care"]


def test_bars_have_real_ranges_gaps_and_volumes(
    calibration: tuple[SyntheticSource, pl.DataFrame],
) -> None:
    # Real: log(high/low) 0.017 on a median day; overnight gaps a third of the daily variance,
    # median |gap| 0.33%; median volume 2.2 million shares, log volume 0.95 across stocks and
    # 0.44 from day to day.
    _, bars = calibration
    frame = bars.sort("symbol", "ts").with_columns(
        (pl.col("high") / pl.col("low")).log().alias("range"),
        (pl.col("open") / pl.col("close").shift(1).over("symbol")).log().alias("gap"),
        (pl.col("close") / pl.col("close").shift(1).over("symbol")).log().alias("ret"),
        pl.col("volume").log().alias("log_volume"),
    )
    assert 0.013 <= frame["range"].median() <= 0.023  # type: ignore[operator]
    gap_share = frame["gap"].var() / frame["ret"].var()  # type: ignore[operator]
    assert 0.2 <= gap_share <= 0.45
    assert 0.002 <= frame["gap"].abs().median() <= 0.005  # type: ignore[operator]
    assert 1e6 <= frame["volume"].median() <= 5e6  # type: ignore[operator]
    per_stock = frame.group_by("symbol").agg(
        pl.col("log_volume").mean().alias("level"), pl.col("log_volume").std().alias("daily")
    )
    assert 0.6 <= per_stock["level"].std() <= 1.3  # type: ignore[operator]
    assert 0.3 <= per_stock["daily"].median() <= 0.6  # type: ignore[operator]
    assert (frame["close"] == frame["adj_close"]).all()


@pytest.fixture(scope="module")
def ten_years() -> tuple[SyntheticSource, pl.DataFrame, pl.DataFrame]:
    """400 symbols over ten years (about a million rows): delivered and true bars."""
    source = SyntheticSource(n_symbols=400, seed=11)
    with pytest.MonkeyPatch.context() as patch:
        true = _true_bars(patch, source, *TEN_YEARS)
    return source, source.daily_bars(*TEN_YEARS), true


def test_defects_appear_at_their_rates_and_only_of_their_kinds(
    ten_years: tuple[SyntheticSource, pl.DataFrame, pl.DataFrame],
) -> None:
    _, bars, true = ten_years
    n = true.height
    assert n == 400 * len(trading_days(*TEN_YEARS))
    joined = true.join(bars, on=["symbol", "ts"], how="left", suffix="_got")
    missing = joined.filter(pl.col("close_got").is_null())
    delivered = joined.filter(pl.col("close_got").is_not_null())
    ratio = delivered["close_got"] / delivered["close"]
    changed = delivered.filter(
        pl.any_horizontal(
            pl.col(c) != pl.col(f"{c}_got")
            for c in ("open", "high", "low", "close", "adj_close", "volume")
        )
    )
    bad = delivered.filter(
        pl.any_horizontal(
            ((pl.col("close_got") / pl.col("close")) - f).abs() < 1e-9
            for f in synthetic.BAD_PRINT_FACTORS
        )
    )
    zero = delivered.filter(pl.col("close_got") == 0)
    below = delivered.filter(
        (pl.col("close_got") == pl.col("close")) & (pl.col("high_got") < pl.col("close_got"))
    )
    # Every changed row is one of the kinds, and each kind comes at about its rate.
    assert changed.height == bad.height + zero.height + below.height
    assert 2e-4 <= missing.height / n <= 8e-4  # a handful of missing rows per 10,000
    assert 2.5e-5 <= bad.height / n <= 1e-4  # about one bad print per 20,000 rows
    assert zero.height >= 1 and zero.height / n <= 2e-5  # very rare
    assert below.height >= 1 and below.height / n <= 2e-5
    assert sorted(set(np.round(ratio.filter(ratio > 0).unique().to_numpy(), 9))) == sorted(
        {1.0, *synthetic.BAD_PRINT_FACTORS}
    )
    # A bad print scales the whole row: it stays consistent, and its adj_close moves with close.
    for c in ("open", "high", "low", "adj_close"):
        assert ((bad[f"{c}_got"] / bad[c] - bad["close_got"] / bad["close"]).abs() < 1e-9).all()
    zero_columns = ("open_got", "high_got", "low_got", "adj_close_got", "volume_got")
    assert (zero.select(pl.sum_horizontal(zero_columns)) == 0).to_series().all()
    assert (below["low_got"] <= below["high_got"]).all()
    # Halts are runs of 1..HALT_MAX_SESSIONS sessions of one symbol (two may touch).
    days = {d: i for i, d in enumerate(trading_days(*TEN_YEARS))}
    runs = (
        missing.with_columns(pl.col("ts").replace_strict(days, return_dtype=pl.Int64).alias("i"))
        .sort("symbol", "i")
        .with_columns((pl.col("i").diff().over("symbol").fill_null(2) != 1).cum_sum().alias("run"))
        .group_by("run")
        .len()
    )
    assert runs["len"].max() <= 2 * synthetic.HALT_MAX_SESSIONS  # type: ignore[operator]
    assert runs.height >= missing.height / synthetic.HALT_MAX_SESSIONS


def test_clean_rows_are_consistent_and_bad_prints_revert_the_next_day(
    ten_years: tuple[SyntheticSource, pl.DataFrame, pl.DataFrame],
) -> None:
    _, bars, true = ten_years
    clean = bars.join(true, on=bars.columns, how="semi")
    assert clean.height >= bars.height - 200
    assert (
        clean.select(
            (pl.col("high") >= pl.max_horizontal("open", "close"))
            & (pl.col("low") <= pl.min_horizontal("open", "close"))
        )
        .to_series()
        .all()
    )
    assert (clean["low"] > 0).all() and (clean["volume"] > 0).all()
    assert (bars["close"] == bars["adj_close"]).all()
    # The row after a bad print (the symbol's next delivered bar) is the true one again.
    ordered = bars.sort("symbol", "ts").with_columns(
        pl.col("ts").shift(-1).over("symbol").alias("next_ts")
    )
    flagged = ordered.join(true, on=["symbol", "ts"], suffix="_true").filter(
        ((pl.col("close") / pl.col("close_true")) - 1).abs() > 0.5
    )
    assert flagged.height > 20
    following = flagged.select("symbol", pl.col("next_ts").alias("ts")).drop_nulls()
    after = following.join(bars, on=["symbol", "ts"]).join(
        true, on=["symbol", "ts"], suffix="_true"
    )
    assert after.height == following.height
    assert (after["close"] == after["close_true"]).sum() >= after.height - 1


def test_any_range_gives_the_same_bars_defects_included() -> None:
    source = SyntheticSource(n_symbols=60, seed=5)
    whole = source.daily_bars(*TEN_YEARS)
    days = trading_days(*TEN_YEARS)
    expected = {(s, d) for s in source.symbols() for d in days}
    halted = sorted(expected - set(whole.select("symbol", "ts").iter_rows()))
    printed = (
        whole.sort("symbol", "ts")
        .filter(
            ((pl.col("close") / pl.col("close").shift(1).over("symbol")).log().abs() > 1.0)
            | (pl.col("close") == 0)
            | (pl.col("high") < pl.col("close"))
        )
        .select("symbol", "ts")
        .rows()
    )
    assert halted and printed
    for _, day in [*halted[:5], *printed[:5]]:
        i = days.index(day)
        for start, end in [
            (days[i], days[min(i + 3, len(days) - 1)]),
            (days[max(i - 1, 0)], days[i]),
            (days[max(i - 40, 0)], days[min(i + 40, len(days) - 1)]),
        ]:
            part = source.daily_bars(start, end)
            assert part.equals(whole.filter(pl.col("ts").is_between(start, end)))


def test_the_same_seed_gives_the_same_bars_and_another_seed_others() -> None:
    start, end = date(2023, 1, 1), date(2023, 12, 31)
    first = SyntheticSource(n_symbols=8, seed=21).daily_bars(start, end)
    again = SyntheticSource(n_symbols=8, seed=21).daily_bars(start, end)
    other = SyntheticSource(n_symbols=8, seed=22).daily_bars(start, end)
    assert first.equals(again)
    assert first.schema == pl.Schema(BAR_SCHEMA)
    assert not first["close"].equals(other["close"])
    assert first["origin"].unique().to_list() == ["synthetic(seed=21)"]


def test_daily_bars_take_a_failures_dict_and_leave_it_empty() -> None:
    source = SyntheticSource(n_symbols=3, seed=1)
    failures: dict[str, str] = {}
    start, end = date(2024, 3, 1), date(2024, 3, 28)
    assert source.daily_bars(start, end, failures).equals(source.daily_bars(start, end))
    assert failures == {}
    assert source.daily_bars(end, start).is_empty()


def test_a_halted_symbol_has_no_minute_bars_and_the_others_follow_the_true_day(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = SyntheticSource(n_symbols=60, seed=5)
    bars = source.daily_bars(*TEN_YEARS)
    day = bars.group_by("ts").len().filter(pl.col("len") < 60).sort("ts")["ts"][0]
    delivered = bars.filter(pl.col("ts") == day)["symbol"]
    true = _true_bars(monkeypatch, source, day, day).filter(pl.col("symbol").is_in(delivered))
    minutes = source.minute_bars(day)
    assert set(minutes["symbol"].unique()) == set(delivered) != set(source.symbols())
    per_symbol = (
        minutes.group_by("symbol")
        .agg(pl.col("open").first(), pl.col("close").last(), pl.col("volume").sum())
        .sort("symbol")
    )
    assert per_symbol["volume"].to_list() == true["volume"].to_list()
    for column in ("open", "close"):
        assert per_symbol[column].to_list() == pytest.approx(true[column].to_list(), rel=1e-12)
