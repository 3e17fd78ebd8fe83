"""The offline default source: seeded synthetic prices with sectors, on NYSE trading days.

Calibrated to real US large caps (../shared/data/us_equities_daily.parquet: the 467 symbols with
at least 1,000 clean bars, 2015-01-12 .. 2020-01-10), so that a strategy has no easier market here
than there. Measured there (medians per stock unless said), and reproduced on average over seeds:

- annualized volatility 0.245 (p10 0.18, p90 0.37); log return 9.7% a year, a bull market: the
  generator assumes a 9% arithmetic return (about 6% in logs), +-3% from stock to stock;
- correlation of daily returns 0.27 across sectors, within one 0.35 (Health Care) to 0.57
  (Financials); the equal-weight market's volatility 0.136: a market factor, a factor per
  sector and an idiosyncratic part, in those shares of each stock's variance;
- fat tails and volatility clustering: kurtosis of daily returns 8.7 (p90 25; the equal-weight
  market's 6.2), autocorrelation of squared returns at lag 1 0.07 (the market's 0.26): each factor
  has GARCH(1,1) variance and Student-t innovations, and each stock a quarterly earnings jump;
- bars: the overnight gap carries a third of the daily variance (median |gap| 0.33%), the
  high-low range is 1.7% of the price on a median day, log volume averages 14.6 (2.2 million
  shares; 0.95 across stocks), varies by 0.44 from day to day, persists (lag-1 autocorrelation
  0.6) and rises with |return| (correlation 0.45).

There is no built-in trend: a stock's returns are a constant drift plus noise whose volatility,
not direction, clusters, so a moving-average strategy finds only what it would find there.

Like a real feed it has rare, seeded defects for the quality gate to catch (rates per row are the
``*_RATE`` constants): halts (1 to 3 sessions of a symbol absent), one-day bad prints that revert
(OHLC and adj_close x 0.3 or 3.5), zero-price rows, a high below the close. Minute bars follow
the true prices: the defects are the daily feed's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import polars as pl

from engine.data.calendar import is_trading_day, session_close, session_open, trading_days
from engine.data.sources import BAR_SCHEMA, MINUTE_SCHEMA, no_corporate_actions

SECTORS = ("Information Technology", "Financials", "Health Care", "Energy", "Industrials")
SYNTHETIC_ORIGIN = date(2015, 1, 2)
TRADING_DAYS_PER_YEAR = 252

# The parameters below are set so that the statistics measured on generated bars match the real
# ones (module docstring); with fat tails and GARCH, sample volatility, correlation and volume
# come out below their parameters, so those sit above the real figures.
# Returns: a stock's expected arithmetic return a year (total return: adj_close carries dividends)
# and its spread across stocks; the log drift is this less half the variance.
EXPECTED_RETURN = 0.09
EXPECTED_RETURN_SPREAD = 0.03
# Annualized volatility per stock: lognormal around the median, clipped.
VOLATILITY_MEDIAN = 0.265
VOLATILITY_SPREAD = 0.27  # standard deviation of log volatility across stocks
VOLATILITY_BOUNDS = (0.12, 0.65)
# Shares of a stock's variance: the market's (+-0.06 per stock; sets the correlation across
# sectors), its sector's (sets within-sector correlation), earnings jumps', the rest
# idiosyncratic.
MARKET_SHARE = 0.34
MARKET_SHARE_SPREAD = 0.06
SECTOR_SHARE = {
    "Information Technology": 0.13,
    "Financials": 0.28,
    "Health Care": 0.08,
    "Energy": 0.27,
    "Industrials": 0.15,
}
# GARCH(1,1) of each factor's unit variance, h' = (1 - a - b) + a e^2 + b h, and the degrees of
# freedom of its Student-t innovations (scaled to unit variance, clipped at INNOVATION_CLIP).
MARKET_GARCH = (0.18, 0.80)
SECTOR_GARCH = (0.08, 0.90)
IDIO_GARCH = (0.14, 0.72)
MARKET_T_DF = 8.0
SECTOR_T_DF = 5.0
IDIO_T_DF = 4.0
INNOVATION_CLIP = 12.0
VARIANCE_CAP = 30.0  # a factor's conditional variance at most this many times its long-run one
# Earnings: each stock announces every EARNINGS_EVERY sessions (its own phase); the news moves
# the price overnight by a Student-t jump with a standard deviation of EARNINGS_JUMP daily
# volatilities. Those jumps are part of the stock's variance (EARNINGS_JUMP^2 / EARNINGS_EVERY
# of it), not added to it.
EARNINGS_EVERY = 63
EARNINGS_JUMP = 2.5
EARNINGS_T_DF = 3.0
# A day's log move is clipped to this (+39%, -28%): real large caps moved more than 30% on
# about 5 days in 100,000, and this keeps every true move inside the quality gate's spike
# threshold (40%), so whatever the gate holds back here is one of the planted defects.
MAX_LOG_MOVE = 0.33
# Bars: the overnight gap takes GAP_SHARE of the day's diffusive move, Student-t noise the
# session undoes, and the earnings jump; shadows (high above max(open, close), low below the
# min) are half-normal, scaled by the day's volatility; starting prices lognormal.
GAP_SHARE = 0.24
GAP_NOISE_T_DF = 3.0
SHADOW_SCALE = 0.45
START_PRICE_MEDIAN = 55.0
START_PRICE_SPREAD = 0.6
# Volume: log shares = the stock's level + elasticity x log(volatility / its usual) + a response
# to the day's |standardized return| + an AR(1) that persists.
VOLUME_LOG_MEAN = 14.78
VOLUME_LOG_SPREAD = 0.95
VOLUME_VOL_ELASTICITY = 1.0
VOLUME_SHOCK = 0.25
VOLUME_PERSISTENCE = 0.6
VOLUME_NOISE = 0.37

# Defects, per (symbol, session) row, exclusive of each other.
HALT_RATE = 2e-4  # a halt starts: 1..HALT_MAX_SESSIONS rows absent (about 4 per 10,000)
HALT_MAX_SESSIONS = 3
BAD_PRINT_RATE = 5e-5  # one row's OHLC and adj_close x a factor, back to normal the next day
BAD_PRINT_FACTORS = (0.3, 3.5)
ZERO_PRICE_RATE = 5e-6  # every price 0 and volume 0 (as a vendor's empty row)
HIGH_BELOW_CLOSE_RATE = 5e-6  # the high 0.1%-1% below the close
# Row kinds of ``_Paths.kind``.
CLEAN, HALTED, BAD_PRINT, ZERO_PRICE, HIGH_BELOW_CLOSE = range(5)


@dataclass(frozen=True)
class _Paths:
    """The whole history from the origin to ``days[-1]``: true prices and the feed's defects."""

    days: list[date]
    open: np.ndarray  # day x symbol, true prices
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    kind: np.ndarray  # day x symbol: CLEAN, HALTED, BAD_PRINT, ZERO_PRICE, HIGH_BELOW_CLOSE
    detail: np.ndarray  # the bad print's factor, the high's shortfall below the close


@dataclass(frozen=True)
class SyntheticSource:
    """Seeded prices from a market + sector + idiosyncratic factor model on NYSE trading days.

    The path is generated from a fixed origin (2015-01-02), each random stream drawn day-major,
    so any date range of the same seed yields the same bars (defects included): partitions
    loaded separately agree with one loaded at once.
    """

    n_symbols: int = 20
    seed: int = 7
    name: str = "synthetic"

    def symbols(self) -> list[str]:
        return [f"SYN{i:03d}" for i in range(self.n_symbols)]

    def sectors(self) -> dict[str, str]:
        return {s: SECTORS[i % len(SECTORS)] for i, s in enumerate(self.symbols())}

    def corporate_actions(self, start: date, end: date) -> pl.DataFrame:
        return no_corporate_actions()  # synthetic prices have no splits or dividends

    def minute_bars(self, day: date) -> pl.DataFrame:
        """Minutes of the regular session (shorter on early-close days) that open at the day's
        synthetic open and close at its close: a Brownian bridge between the two. A halted
        symbol has none; a daily bad print is the daily feed's, the minutes keep true prices."""
        if day < SYNTHETIC_ORIGIN or not is_trading_day(day):
            return pl.DataFrame(schema=MINUTE_SCHEMA)
        paths = _paths(self.n_symbols, self.seed, day)
        trading = paths.kind[-1] != HALTED
        symbols = np.array(self.symbols())[trading]
        day_open, day_close = paths.open[-1][trading], paths.close[-1][trading]
        day_volume = paths.volume[-1][trading]
        minutes = pd.date_range(
            session_open(day), session_close(day), freq="1min", inclusive="left"
        )
        m, n = len(minutes), len(symbols)
        if n == 0:
            return pl.DataFrame(schema=MINUTE_SCHEMA)
        rng = np.random.default_rng([self.seed, 100, day.toordinal()])
        steps = np.cumsum(rng.standard_normal((m, n)) * 0.0008, axis=0)
        fraction = np.arange(1, m + 1)[:, None] / m
        start, finish = np.log(day_open), np.log(day_close)
        path = start + (finish - start) * fraction + steps - fraction * steps[-1]
        close = np.exp(path)
        close[-1] = day_close  # exactly the day's close
        open_ = np.vstack([day_open[None, :], close[:-1]])
        wiggle = np.abs(rng.standard_normal((2, m, n))) * 0.0004
        weights = rng.dirichlet(np.ones(m), n)
        shares = np.stack(
            [rng.multinomial(v, w) for v, w in zip(day_volume, weights, strict=True)],
            axis=1,
        ).reshape(m, n)  # minute volumes add up to the day's exactly
        frame = pl.DataFrame(
            {
                "symbol": np.tile(symbols, m),
                "ts": np.repeat(minutes.tz_convert("UTC").tz_localize(None).to_numpy(), n),
                "open": open_.ravel(),
                "high": (np.maximum(open_, close) * (1 + wiggle[0])).ravel(),
                "low": (np.minimum(open_, close) * (1 - wiggle[1])).ravel(),
                "close": close.ravel(),
                "volume": shares.astype(np.int64).ravel(),
            },
            schema_overrides={"symbol": pl.String},
        )
        return frame.with_columns(
            pl.col("ts").dt.replace_time_zone("UTC"),
            pl.lit(self.name).alias("source"),
            pl.lit(f"synthetic(seed={self.seed})").alias("origin"),
        ).select(list(MINUTE_SCHEMA))

    def daily_bars(
        self, start: date, end: date, failures: dict[str, str] | None = None
    ) -> pl.DataFrame:
        """Bars with ``start <= ts <= end``; ``failures`` is the protocol's record of symbols a
        source could not fetch: this one never fails, so it is left untouched."""
        if start > end or not trading_days(SYNTHETIC_ORIGIN, end):
            return pl.DataFrame(schema=BAR_SCHEMA)
        paths = _paths(self.n_symbols, self.seed, end)
        days = np.array(paths.days, dtype="datetime64[D]")
        first = int(np.searchsorted(days, np.datetime64(start, "D")))
        sl = slice(first, len(days))
        kind, detail = paths.kind[sl], paths.detail[sl]
        open_, high, low = paths.open[sl].copy(), paths.high[sl].copy(), paths.low[sl].copy()
        close, volume = paths.close[sl].copy(), paths.volume[sl].copy()

        bad = kind == BAD_PRINT
        for prices in (open_, high, low, close):
            prices[bad] *= detail[bad]
        zero = kind == ZERO_PRICE
        for prices in (open_, high, low, close):
            prices[zero] = 0.0
        volume[zero] = 0
        below = kind == HIGH_BELOW_CLOSE
        high[below] = close[below] * (1 - detail[below])
        low[below] = np.minimum(low[below], high[below])

        k = len(days) - first
        present = (kind != HALTED).ravel()
        frame = pl.DataFrame(
            {
                "symbol": np.tile(np.array(self.symbols()), k)[present],
                "ts": np.repeat(days[sl], self.n_symbols)[present],
                "open": open_.ravel()[present],
                "high": high.ravel()[present],
                "low": low.ravel()[present],
                "close": close.ravel()[present],
                "adj_close": close.ravel()[present],  # no splits or dividends
                "volume": volume.ravel()[present],
            },
            schema_overrides={"symbol": pl.String},
        )
        return frame.with_columns(
            pl.lit(self.name).alias("source"),
            pl.lit(f"synthetic(seed={self.seed})").alias("origin"),
        ).select(list(BAR_SCHEMA))


def _paths(n_symbols: int, seed: int, end: date) -> _Paths:
    """Every bar from the origin to ``end``. Each stream is drawn day-major from the origin, so
    the rows of a day do not depend on ``end``."""
    days = trading_days(SYNTHETIC_ORIGIN, end)
    n_days, n = len(days), n_symbols

    def rng(stream: int) -> np.random.Generator:
        return np.random.default_rng([seed, stream])

    # Per stock: volatility, drift, variance shares, starting price, volume level.
    sector_of = np.arange(n) % len(SECTORS)
    vol = np.clip(
        VOLATILITY_MEDIAN * np.exp(VOLATILITY_SPREAD * rng(10).standard_normal(n)),
        *VOLATILITY_BOUNDS,
    )
    expected = EXPECTED_RETURN + EXPECTED_RETURN_SPREAD * rng(11).standard_normal(n)
    drift = (expected - vol**2 / 2) / TRADING_DAYS_PER_YEAR
    market_share = MARKET_SHARE + rng(12).uniform(-1, 1, n) * MARKET_SHARE_SPREAD
    sector_share = np.array([SECTOR_SHARE[SECTORS[s]] for s in sector_of])
    idio_share = 1 - market_share - sector_share - EARNINGS_JUMP**2 / EARNINGS_EVERY
    start_price = START_PRICE_MEDIAN * np.exp(START_PRICE_SPREAD * rng(13).standard_normal(n))
    volume_level = VOLUME_LOG_MEAN + VOLUME_LOG_SPREAD * rng(14).standard_normal(n)

    # Unit-variance factor shocks with GARCH(1,1) variance: market, sectors, idiosyncratic.
    market, h_market = _garch(_student_t(rng(1), (n_days, 1), MARKET_T_DF), *MARKET_GARCH)
    sector, h_sector = _garch(
        _student_t(rng(2), (n_days, len(SECTORS)), SECTOR_T_DF), *SECTOR_GARCH
    )
    idio, h_idio = _garch(_student_t(rng(3), (n_days, n), IDIO_T_DF), *IDIO_GARCH)
    daily_vol = vol / np.sqrt(TRADING_DAYS_PER_YEAR)
    shock = daily_vol * (
        np.sqrt(market_share) * market
        + np.sqrt(sector_share) * sector[:, sector_of]
        + np.sqrt(idio_share) * idio
    )
    sigma = daily_vol * np.sqrt(
        market_share * h_market + sector_share * h_sector[:, sector_of] + idio_share * h_idio
    )  # the day's conditional volatility, earnings aside
    phase = rng(15).integers(0, EARNINGS_EVERY, n)
    announces = (np.arange(n_days)[:, None] - phase[None, :]) % EARNINGS_EVERY == 0
    news = _student_t(rng(9), (n_days, n), EARNINGS_T_DF)
    jump = np.where(announces, news * EARNINGS_JUMP * daily_vol, 0.0)
    log_ret = np.clip(drift + shock + jump, -MAX_LOG_MOVE, MAX_LOG_MOVE)
    close = start_price * np.exp(np.cumsum(log_ret, axis=0))
    prev_close = np.vstack([start_price[None, :], close[:-1]])

    # The overnight gap: GAP_SHARE of the diffusive move plus noise the session undoes (its
    # variance chosen so gap and session are uncorrelated), and the earnings news.
    gap_noise = _student_t(rng(6), (n_days, n), GAP_NOISE_T_DF)
    gap = GAP_SHARE * shock + np.sqrt(GAP_SHARE * (1 - GAP_SHARE)) * sigma * gap_noise + jump
    open_ = prev_close * np.exp(gap)
    shadows = np.abs(rng(7).standard_normal((n_days, 2, n))) * SHADOW_SCALE * sigma[:, None, :]
    high = np.maximum(open_, close) * np.exp(shadows[:, 0])
    low = np.minimum(open_, close) * np.exp(-shadows[:, 1])

    surprise = np.abs((shock + jump) / sigma) - np.sqrt(2 / np.pi)
    from scipy.signal import lfilter  # scipy loads when bars are made, not on import

    persistent = lfilter(
        [1.0], [1.0, -VOLUME_PERSISTENCE], rng(8).standard_normal((n_days, n)), axis=0
    ) * (VOLUME_NOISE * np.sqrt(1 - VOLUME_PERSISTENCE**2))
    log_volume = (
        volume_level
        + VOLUME_VOL_ELASTICITY * np.log(sigma / daily_vol)
        + VOLUME_SHOCK * surprise
        + persistent
    )
    volume = np.round(np.exp(log_volume)).astype(np.int64)

    kind, detail = _defects(rng(20), rng(21), n_days, n)
    return _Paths(days, open_, high, low, close, volume, kind, detail)


def _student_t(rng: np.random.Generator, shape: tuple[int, int], df: float) -> np.ndarray:
    """Student-t draws scaled to unit variance, clipped at INNOVATION_CLIP."""
    draws = rng.standard_t(df, shape) * np.sqrt((df - 2) / df)
    return np.clip(draws, -INNOVATION_CLIP, INNOVATION_CLIP)


def _garch(z: np.ndarray, alpha: float, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """Shocks e = sqrt(h) z with h' = (1 - alpha - beta) + alpha e^2 + beta h, from h = 1."""
    omega = 1 - alpha - beta
    h = np.empty_like(z)
    e = np.empty_like(z)
    current = np.ones(z.shape[1])
    for t in range(z.shape[0]):
        h[t] = current
        e[t] = np.sqrt(current) * z[t]
        current = np.minimum(omega + alpha * e[t] ** 2 + beta * current, VARIANCE_CAP)
    return e, h


def _defects(
    which: np.random.Generator, how: np.random.Generator, n_days: int, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Row kinds and their details, each row drawn on its own (day-major) from two streams."""
    u = which.random((n_days, n))
    aux = how.random((n_days, n))
    rates = [HALT_RATE, BAD_PRINT_RATE, ZERO_PRICE_RATE, HIGH_BELOW_CLOSE_RATE]
    kinds = [HALTED, BAD_PRINT, ZERO_PRICE, HIGH_BELOW_CLOSE]
    kind = np.full((n_days, n), CLEAN, dtype=np.int8)
    detail = np.ones((n_days, n))
    floor = 0.0
    for rate, k in zip(rates, kinds, strict=True):
        hit = (u >= floor) & (u < floor + rate)
        kind[hit] = k
        floor += rate
    factors = np.array(BAD_PRINT_FACTORS)
    bad = kind == BAD_PRINT
    detail[bad] = factors[np.minimum((aux[bad] * len(factors)).astype(int), len(factors) - 1)]
    below = kind == HIGH_BELOW_CLOSE
    detail[below] = 0.001 + 0.009 * aux[below]
    # A halt lasts 1..HALT_MAX_SESSIONS sessions: the ones after its first are absent too,
    # whatever they drew.
    for t, i in zip(*np.nonzero(kind == HALTED), strict=True):
        kind[t : t + 1 + int(aux[t, i] * HALT_MAX_SESSIONS), i] = HALTED
    return kind, detail
