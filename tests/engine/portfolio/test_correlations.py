"""Rolling correlation matrices, the regime-shift measure and a refresh on the test database
(synthetic and real data)."""

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import psycopg
import pytest

from engine.approvals.reoptimization import refresh_correlations
from engine.approvals.workflow import approve, get_allocation
from engine.data.load import load_daily_bars
from engine.data.sources import LocalFileSource, MarketDataSource
from engine.data.synthetic import SyntheticSource
from engine.portfolio.correlation import (
    extreme_pairs,
    from_pairs,
    regime_shift,
    rolling_matrix,
    sector_returns,
    to_pairs,
)
from tests.conftest import SHARED_DATA
from tests.helpers import pending_allocation


def _returns(n_days: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    common = rng.normal(0, 0.01, (n_days, 1))
    index = pd.bdate_range("2023-01-02", periods=n_days)
    return pd.DataFrame(
        common * [1.0, 0.5, -0.5] + rng.normal(0, 0.01, (n_days, 3)),
        index=index,
        columns=["x", "y", "z"],
    )


def test_a_window_matrix_is_the_pearson_correlation_of_the_last_window_days() -> None:
    returns = _returns()
    wm = rolling_matrix(returns, "asset", 63)
    assert wm is not None and wm.as_of == returns.index[-1]
    tail = returns.iloc[-63:].to_numpy()
    centred = tail - tail.mean(axis=0)
    expected = (centred.T @ centred) / np.sqrt(
        np.outer((centred**2).sum(axis=0), (centred**2).sum(axis=0))
    )
    np.testing.assert_allclose(wm.matrix.to_numpy(), expected, atol=1e-12)
    assert rolling_matrix(returns.iloc[:62], "asset", 63) is None


def test_series_without_a_full_window_or_without_movement_are_left_out_with_why() -> None:
    returns = _returns()
    returns["gappy"] = returns["x"]
    returns.iloc[-5, returns.columns.get_loc("gappy")] = np.nan
    returns["flat"] = 0.0
    wm = rolling_matrix(returns, "asset", 63)
    assert wm is not None and list(wm.matrix.columns) == ["x", "y", "z"]
    assert wm.left_out == {
        "gappy": "62 of the last 63 daily returns",
        "flat": "no movement over the last 63 days",
    }


def test_regime_shift_is_the_mean_absolute_change_over_shared_pairs() -> None:
    names = ["a", "b", "c"]
    before = pd.DataFrame([[1, 0.5, 0.2], [0.5, 1, 0.1], [0.2, 0.1, 1]], index=names, columns=names)
    after = pd.DataFrame([[1, 0.1, 0.2], [0.1, 1, 0.4], [0.2, 0.4, 1]], index=names, columns=names)
    shift, pairs = regime_shift(after, before)
    assert pairs == 3 and shift == pytest.approx((0.4 + 0.0 + 0.3) / 3)
    grown = after.reindex(index=[*names, "d"], columns=[*names, "d"]).fillna(0.9)
    assert regime_shift(grown, before) == (pytest.approx((0.4 + 0.0 + 0.3) / 3), 3)
    assert regime_shift(before.loc[["a"], ["a"]], before) == (None, 0)


def test_pairs_round_trip_and_are_stored_once_each() -> None:
    wm = rolling_matrix(_returns(), "asset", 63)
    assert wm is not None
    pairs = to_pairs(wm.matrix)
    assert pairs.height == 3 and (pairs["a"] < pairs["b"]).all()
    pd.testing.assert_frame_equal(from_pairs(pairs), wm.matrix, check_names=False)


def test_sector_returns_are_the_equal_weight_mean_of_members_with_a_return() -> None:
    index = pd.bdate_range("2024-01-01", periods=2)
    assets = pd.DataFrame(
        {"A": [0.01, 0.03], "B": [0.03, np.nan], "C": [-0.02, 0.04], "D": [0.5, 0.5]}, index=index
    )
    sectors = sector_returns(assets, {"A": "Tech", "B": "Tech", "C": "Energy"})
    assert list(sectors.columns) == ["Energy", "Tech"]
    assert sectors["Tech"].tolist() == pytest.approx([0.02, 0.03])
    assert sectors["Energy"].tolist() == pytest.approx([-0.02, 0.04])


def _store(conn: psycopg.Connection, source: MarketDataSource, start: date, end: date) -> None:
    assert load_daily_bars(conn, source, start, end).passed
    conn.commit()


def _shifts(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        "SELECT as_of, kind, window_days, previous_as_of, shift, flagged_allocation "
        "FROM correlation_shifts ORDER BY as_of, kind, window_days"
    ).fetchall()


def test_a_refresh_stores_matrices_and_shifts_and_marks_the_active_allocation_once(
    conn: psycopg.Connection,
) -> None:
    source = SyntheticSource(n_symbols=12, seed=3)
    _store(conn, source, date(2023, 1, 3), date(2024, 6, 28))
    first = refresh_correlations(conn, threshold=0.0)
    kinds = {(m.matrix.kind, m.matrix.window) for m in first.matrices}
    assert kinds == {("asset", 63), ("asset", 252), ("sector", 63), ("sector", 252)}
    assert first.skipped == {"strategy": "no backtest run is stored yet"}
    assert first.flagged_allocation is None  # nothing is ACTIVE
    # Assets: the latest day only, nothing before it, each symbol's extreme partners (65 of the
    # 66 pairs of 12 symbols); sectors: every day of a full window, every pair.
    assert [m.shift for m in first.matrices if m.matrix.kind == "asset"] == [None, None]
    extremes = {w: extreme_pairs(first.latest("asset", w).matrix).height for w in (63, 252)}  # type: ignore[union-attr]
    days = conn.execute("SELECT count(DISTINCT ts) FROM bars_daily").fetchone()[0]
    n_sectors = len(set(source.sectors().values()))
    sector_pairs = n_sectors * (n_sectors - 1) // 2
    rows = conn.execute(
        """SELECT kind, window_days, count(*), count(DISTINCT as_of) FROM correlations
           GROUP BY 1, 2 ORDER BY 1, 2"""
    ).fetchall()
    # `days` bars give days - 1 returns, so days - window full windows.
    assert rows == [
        ("asset", 63, extremes[63], 1),
        ("asset", 252, extremes[252], 1),
        ("sector", 63, sector_pairs * (days - 63), days - 63),
        ("sector", 252, sector_pairs * (days - 252), days - 252),
    ]

    pending_allocation(conn, "live", {"sma_cross_10_100": 0.5, "sma_cross_20_150": 0.5})
    approve(conn, "live", by="alice")
    _store(conn, source, date(2024, 7, 1), date(2024, 9, 30))
    second = refresh_correlations(conn, threshold=0.0)
    assert second.flagged_allocation == "live"
    assert "asset 63-day correlations moved" in (second.reason or "")
    assert get_allocation(conn, "live").reoptimize_reason == second.reason
    shifted = [s for s in _shifts(conn) if s[0] == date(2024, 9, 30)]
    assert len(shifted) == 4 and all(s[4] > 0 and s[5] == "live" for s in shifted)
    previous = {(s[1], s[2]): s[3] for s in shifted}
    assert previous == {  # assets against the last refresh, sectors against the day before
        ("asset", 63): date(2024, 6, 28),
        ("asset", 252): date(2024, 6, 28),
        ("sector", 63): date(2024, 9, 27),
        ("sector", 252): date(2024, 9, 27),
    }
    added = conn.execute(
        """SELECT count(DISTINCT as_of) FROM correlations
           WHERE kind = 'sector' AND window_days = 63 AND as_of > '2024-06-28'"""
    ).fetchone()[0]
    assert (
        added
        == conn.execute(
            "SELECT count(DISTINCT ts) FROM bars_daily WHERE ts > '2024-06-28'"
        ).fetchone()[0]
    )

    # The shift against the matrix of the last refresh's day, computed independently from the
    # stored bars: the last 63 daily returns up to each day, every pair of the 12 symbols.
    assert 0 < extremes[63] < 66
    bars = conn.execute("SELECT ts, symbol, adj_close FROM bars_daily").fetchall()
    close = pd.DataFrame(bars, columns=["ts", "symbol", "close"]).pivot(
        index="ts", columns="symbol", values="close"
    )
    returns = close.sort_index().pct_change(fill_method=None)

    def matrix(day: date) -> np.ndarray:
        return np.corrcoef(returns.loc[:day].tail(63).to_numpy(), rowvar=False)

    upper = np.triu_indices(12, k=1)
    old, new = matrix(date(2024, 6, 28)), matrix(date(2024, 9, 30))
    expected = float(np.abs(new[upper] - old[upper]).mean())
    (asset_63,) = [m for m in second.matrices if (m.matrix.kind, m.matrix.window) == ("asset", 63)]
    assert asset_63.shift == pytest.approx(expected, rel=1e-12)

    # Refreshing the same day again neither re-flags nor marks a newly approved allocation.
    pending_allocation(conn, "next", {"sma_cross_10_100": 0.5, "sma_cross_20_150": 0.5})
    approve(conn, "next", by="alice")
    third = refresh_correlations(conn, threshold=0.0)
    assert third.flagged_allocation is None
    assert get_allocation(conn, "next").reoptimize_reason is None


def test_each_days_sector_shift_is_against_the_day_before(conn: psycopg.Connection) -> None:
    _store(conn, SyntheticSource(n_symbols=8, seed=5), date(2024, 1, 2), date(2024, 6, 28))
    refresh_correlations(conn, threshold=1.0, windows=(63,))
    stored = conn.execute(
        """SELECT as_of, a, b, rho FROM correlations
           WHERE kind = 'sector' AND window_days = 63 ORDER BY as_of, a, b"""
    ).fetchall()
    frame = pl.DataFrame(stored, schema=["as_of", "a", "b", "rho"], orient="row")
    by_day = {day: group for (day,), group in frame.group_by("as_of", maintain_order=True)}
    days = sorted(by_day)
    shifts = dict(
        conn.execute(
            """SELECT as_of, shift FROM correlation_shifts
               WHERE kind = 'sector' AND window_days = 63"""
        ).fetchall()
    )
    assert shifts[days[0]] is None
    for before, after in zip(days, days[1:], strict=False):
        expected = (by_day[after]["rho"] - by_day[before]["rho"]).abs().mean()
        assert shifts[after] == pytest.approx(expected, rel=1e-12)


def test_below_the_threshold_nothing_is_marked(conn: psycopg.Connection) -> None:
    source = SyntheticSource(n_symbols=6, seed=3)
    _store(conn, source, date(2023, 1, 3), date(2024, 6, 28))
    refresh_correlations(conn, threshold=0.5)
    pending_allocation(conn, "live", {"sma_cross_10_100": 0.5, "sma_cross_20_150": 0.5})
    approve(conn, "live", by="alice")
    _store(conn, source, date(2024, 7, 1), date(2024, 7, 3))
    report = refresh_correlations(conn, threshold=0.5)
    assert all(m.shift is not None and m.shift < 0.5 for m in report.matrices)
    assert report.flagged_allocation is None
    assert get_allocation(conn, "live").reoptimize_reason is None


def test_sector_correlations_of_the_real_universe(
    conn: psycopg.Connection, real_prices: Path
) -> None:
    source = LocalFileSource(str(real_prices), str(SHARED_DATA / "sectors.csv"))
    _store(conn, source, date(2019, 1, 1), date(2019, 12, 31))
    report = refresh_correlations(conn, threshold=1.0, windows=(63,))
    by_kind = {m.matrix.kind: m.matrix for m in report.matrices}
    sectors = by_kind["sector"].matrix
    assert len(sectors) == len(set(source.sectors().values()))
    assert np.allclose(sectors.to_numpy(), sectors.to_numpy().T)
    values = sectors.to_numpy()
    assert np.allclose(np.diag(values), 1) and (np.abs(values) <= 1 + 1e-12).all()
    assert values[np.triu_indices(len(values), k=1)].mean() > 0.2  # sectors move together
    assets = by_kind["asset"]
    stored = conn.execute("SELECT count(DISTINCT symbol) FROM bars_daily").fetchone()
    assert (len(assets.matrix) + len(assets.left_out),) == stored


def test_an_asset_matrix_keeps_each_symbols_most_and_least_correlated_partners() -> None:
    rng = np.random.default_rng(1)
    names = [f"S{i:02d}" for i in range(40)]
    matrix = pd.DataFrame(
        np.corrcoef(rng.standard_normal((300, 40)), rowvar=False), index=names, columns=names
    )
    kept = extreme_pairs(matrix, 5)
    pairs = {(a, b): rho for a, b, rho in kept.iter_rows()}
    assert len(pairs) <= 40 * 10  # grows with the symbols, not with their pairs (780)
    for name in names:
        partners = matrix[name].drop(name).sort_values()
        for other in [*partners.index[:5], *partners.index[-5:]]:
            a, b = sorted((name, other))
            assert pairs[a, b] == matrix.loc[a, b]  # the upper triangle, as stored
    assert extreme_pairs(matrix.iloc[:11, :11], 5).height == 55  # few enough: every pair
