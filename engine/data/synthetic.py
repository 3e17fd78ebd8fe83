"""The offline default source: seeded synthetic prices with sectors, on NYSE trading days."""

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


@dataclass(frozen=True)
class SyntheticSource:
    """Seeded prices from a market + sector + idiosyncratic factor model on NYSE trading days.

    The path is generated from a fixed origin (2015-01-02), so any date range of the same seed
    yields the same bars: partitions loaded separately agree with one loaded at once.
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
        synthetic open and close at its close: a Brownian bridge between the two."""
        if not is_trading_day(day):
            return pl.DataFrame(schema=MINUTE_SCHEMA)
        daily = self.daily_bars(day, day)
        minutes = pd.date_range(
            session_open(day), session_close(day), freq="1min", inclusive="left"
        )
        m, n = len(minutes), daily.height
        rng = np.random.default_rng([self.seed, 100, day.toordinal()])
        steps = np.cumsum(rng.standard_normal((m, n)) * 0.0008, axis=0)
        fraction = np.arange(1, m + 1)[:, None] / m
        start, finish = np.log(daily["open"].to_numpy()), np.log(daily["close"].to_numpy())
        path = start + (finish - start) * fraction + steps - fraction * steps[-1]
        close = np.exp(path)
        open_ = np.vstack([np.exp(start)[None, :], close[:-1]])
        wiggle = np.abs(rng.standard_normal((2, m, n))) * 0.0004
        weights = rng.dirichlet(np.ones(m), n)
        shares = np.stack(
            [
                rng.multinomial(v, w)
                for v, w in zip(daily["volume"].to_numpy(), weights, strict=True)
            ],
            axis=1,
        )  # minute volumes add up to the day's exactly
        frame = pl.DataFrame(
            {
                "symbol": np.tile(daily["symbol"].to_numpy(), m),
                "ts": np.repeat(minutes.tz_convert("UTC").tz_localize(None).to_numpy(), n),
                "open": open_.ravel(),
                "high": (np.maximum(open_, close) * (1 + wiggle[0])).ravel(),
                "low": (np.minimum(open_, close) * (1 - wiggle[1])).ravel(),
                "close": close.ravel(),
                "volume": shares.astype(np.int64).ravel(),
            }
        )
        return frame.with_columns(
            pl.col("ts").dt.replace_time_zone("UTC"),
            pl.lit(self.name).alias("source"),
            pl.lit(f"synthetic(seed={self.seed})").alias("origin"),
        ).select(list(MINUTE_SCHEMA))

    def daily_bars(self, start: date, end: date) -> pl.DataFrame:
        days = trading_days(SYNTHETIC_ORIGIN, end)
        if not days or start > end:
            return pl.DataFrame(schema=BAR_SCHEMA)
        n_days, n = len(days), self.n_symbols

        def rng(stream: int) -> np.random.Generator:
            return np.random.default_rng([self.seed, stream])

        # Each component draws from its own stream, day-major, so a longer range only appends rows.
        market = rng(1).standard_normal(n_days) * 0.009
        sector_shocks = rng(2).standard_normal((n_days, len(SECTORS))) * 0.006
        idio = rng(3).standard_normal((n_days, n)) * 0.012
        sector_of = np.arange(n) % len(SECTORS)
        # Slow regimes give trends that trend-following strategies can find (or not).
        regime = np.sin(np.arange(n_days)[:, None] / 90.0 + np.arange(n)[None, :]) * 0.0012
        drift = 0.0003 + rng(4).uniform(-0.0002, 0.0004, n)
        log_ret = market[:, None] + sector_shocks[:, sector_of] + idio + regime + drift
        start_price = rng(5).uniform(20, 300, n)
        close = start_price * np.exp(np.cumsum(log_ret, axis=0))
        gap = rng(6).standard_normal((n_days, n)) * 0.003
        prev_close = np.vstack([start_price[None, :], close[:-1]])
        open_ = prev_close * np.exp(gap)
        spread = np.abs(rng(7).standard_normal((n_days, 2, n))) * 0.006
        high = np.maximum(open_, close) * (1 + spread[:, 0])
        low = np.minimum(open_, close) * (1 - spread[:, 1])
        volume = np.round(rng(8).lognormal(13.5, 0.4, (n_days, n))).astype(np.int64)

        first = np.searchsorted(np.array(days, dtype="datetime64[D]"), np.datetime64(start, "D"))
        sl = slice(int(first), n_days)
        k = n_days - int(first)
        frame = pl.DataFrame(
            {
                "symbol": np.tile(np.array(self.symbols()), k),
                "ts": np.repeat(np.array(days[sl], dtype="datetime64[D]"), n),
                "open": open_[sl].ravel(),
                "high": high[sl].ravel(),
                "low": low[sl].ravel(),
                "close": close[sl].ravel(),
                "adj_close": close[sl].ravel(),
                "volume": volume[sl].ravel(),
            }
        )
        return frame.with_columns(
            pl.lit(self.name).alias("source"),
            pl.lit(f"synthetic(seed={self.seed})").alias("origin"),
        ).select(list(BAR_SCHEMA))
