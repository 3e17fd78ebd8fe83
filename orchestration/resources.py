"""Resources: configuration only. Connections, sources and broker clients are objects they make.

- ``Database``: PostgreSQL/TimescaleDB at ``url`` (from ``EnvVar("TRADEFLOW_DATABASE_URL")`` when
  set; migrations as ``owner_url``), else the embedded server. Pending migrations are applied
  once per process.
- ``MarketData``: the bar source (``synthetic``, the offline default, or ``files``).
- ``BrokerConfig``: where orders go: each strategy's trading mode and named account pick the
  simulated broker, Alpaca paper or Alpaca live (keys per account through ``EnvVar``).
- ``Settings``: research, allocation and risk thresholds.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Literal

import dagster as dg
import psycopg

from engine.backtest.params import SweepParams
from engine.brokers.routing import (
    ALLOW_LIVE_ENV,
    AccountSettings,
    AlpacaKeys,
    AlpacaSettings,
    BrokerRouter,
    key_variables,
    live_allowed,
)
from engine.brokers.simulated import SimulatedBroker
from engine.data.quality import GateSettings
from engine.data.read_store import latest_prices
from engine.data.sources import LocalFileSource, MarketDataSource
from engine.data.synthetic import SyntheticSource
from engine.errors import ConfigurationError
from engine.execution.executor import ExecutionSettings
from engine.portfolio.constraints import AllocationConstraints
from engine.risk.limits import RiskLimits
from engine.storage.connection import resolve_urls
from engine.storage.migrations import migrate, refresh_aggregates
from engine.validation.gate import GateThresholds

_migrated: set[str] = set()


class Database(dg.ConfigurableResource):
    """PostgreSQL (TimescaleDB when available). ``url`` is the application's connection and
    ``owner_url`` the owner's, for migrations (both from ``EnvVar``: TRADEFLOW_DATABASE_URL and
    TRADEFLOW_OWNER_DATABASE_URL); unset: the embedded server with both roles."""

    url: str | None = None
    owner_url: str | None = None

    def database_url(self) -> str:
        urls = resolve_urls(self.url, self.owner_url)
        if urls.owner not in _migrated:
            with psycopg.connect(urls.owner) as conn:
                migrate(conn)
            _migrated.add(urls.owner)
        return urls.app

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        """A connection whose transaction commits on success and rolls back on error."""
        with psycopg.connect(self.database_url()) as conn:
            yield conn

    def refresh_aggregates(self) -> list[str]:
        """Bring the weekly bars up to date after bars changed, as their owner; returns the
        aggregates this configuration may not refresh (no owner's URL)."""
        self.database_url()
        with psycopg.connect(resolve_urls(self.url, self.owner_url).owner) as conn:
            return refresh_aggregates(conn)


class MarketData(dg.ConfigurableResource):
    """Where bars come from: ``synthetic`` (seeded, offline), ``files`` (Parquet/CSV),
    ``polygon`` or ``alpaca`` (``symbols``; keys from ``EnvVar``: POLYGON_API_KEY,
    ALPACA_API_KEY and ALPACA_SECRET_KEY).

    A key field left unset is read from its variable when the source is made: run config that
    picks a vendor in the launchpad rebuilds the resource from its fields alone, without the
    ``EnvVar`` the definitions bound, and a key must never be typed into run config."""

    source: Literal["synthetic", "files", "polygon", "alpaca"] = "synthetic"
    path: str = ""
    sectors_path: str = ""
    n_symbols: int = 20
    seed: int = 7
    symbols: list[str] = []
    polygon_api_key: str | None = None
    polygon_base_url: str = "https://api.polygon.io"
    polygon_requests_per_minute: float = 5.0
    alpaca_api_key: str | None = None
    alpaca_secret_key: str | None = None
    alpaca_feed: str = "iex"
    alpaca_base_url: str | None = None
    vendor_timeout_seconds: float = 10.0
    vendor_retries: int = 3

    def create_source(self) -> MarketDataSource:
        if self.source == "files":
            if not self.path:
                raise ConfigurationError("market_data.path must name a Parquet or CSV file")
            return LocalFileSource(self.path, self.sectors_path or None)
        if self.source == "polygon":
            from engine.data.polygon_source import PolygonSource  # the vendor's client: if used

            return PolygonSource(
                api_key=self._key("polygon_api_key", "POLYGON_API_KEY"),
                symbols=tuple(self.symbols),
                base_url=self.polygon_base_url,
                requests_per_minute=self.polygon_requests_per_minute,
                timeout_seconds=self.vendor_timeout_seconds,
                retries=self.vendor_retries,
            )
        if self.source == "alpaca":
            from engine.data.alpaca_source import AlpacaSource

            return AlpacaSource(
                api_key=self._key("alpaca_api_key", "ALPACA_API_KEY"),
                secret_key=self._key("alpaca_secret_key", "ALPACA_SECRET_KEY"),
                symbols=tuple(self.symbols),
                feed=self.alpaca_feed,
                base_url=self.alpaca_base_url,
                timeout_seconds=self.vendor_timeout_seconds,
            )
        return SyntheticSource(n_symbols=self.n_symbols, seed=self.seed)

    def _key(self, setting: str, variable: str) -> str:
        """The resource's key, else the variable's value; never put into a message."""
        key = getattr(self, setting) or dg.EnvVar(variable).get_value()
        if not key:
            raise ConfigurationError(f"market_data.{setting} is not set: export {variable}")
        return key


class BrokerConfig(dg.ConfigurableResource):
    """Where each strategy's orders go (its trading mode and account): the simulated broker (its
    book in the same database), Alpaca paper or Alpaca live; and how execution follows them.

    Keys and the live opt-in are not configuration (run config could change them, and Dagster
    would store them): each account's keys are read through ``dg.EnvVar`` when a run needs them,
    from ALPACA_PAPER_API_KEY ... for the default account and ALPACA_<NAME>_PAPER_API_KEY ... for
    a named one; live trading also needs TRADEFLOW_ALLOW_LIVE=yes in the run's environment."""

    accounts: list[str] = []  # named accounts besides "default" (TRADEFLOW_ACCOUNTS)
    paper_url: str | None = None  # another endpoint for Alpaca paper (a proxy, a test server)
    live_url: str | None = None
    initial_cash: float = 100_000.0
    slippage_bps: float = 5.0
    commission_bps: float = 1.0
    requests_per_minute: float = 200.0
    timeout_seconds: float = 10.0
    retries: int = 4
    fill_wait_seconds: float = 30.0
    poll_seconds: float = 1.0
    lock_wait_seconds: float = 300.0

    def router(self, database: Database) -> BrokerRouter:
        """Each account's brokers; the simulated one prices orders at the latest stored closes."""
        database_url = database.database_url()
        with database.connect() as conn:
            prices = {symbol: close for symbol, (_, close) in latest_prices(conn).items()}

        def keys(account: str, mode: str, url: str | None) -> AlpacaKeys:
            api_key, secret_key = key_variables(account, mode)
            return AlpacaKeys(
                dg.EnvVar(api_key).get_value(), dg.EnvVar(secret_key).get_value(), url
            )

        return BrokerRouter(
            accounts={
                name: AccountSettings(
                    keys(name, "PAPER", self.paper_url), keys(name, "LIVE", self.live_url)
                )
                for name in ["default", *self.accounts]
            },
            simulated=lambda account: SimulatedBroker(
                database_url=database_url,
                price_of=prices.get,
                account_name=account,
                initial_cash=self.initial_cash,
                slippage_bps=self.slippage_bps,
                commission_bps=self.commission_bps,
            ),
            allow_live=live_allowed(dg.EnvVar(ALLOW_LIVE_ENV).get_value()),
            alpaca=AlpacaSettings(self.timeout_seconds, self.retries, self.requests_per_minute),
        )

    def execution(self) -> ExecutionSettings:
        return ExecutionSettings(
            fill_wait_seconds=self.fill_wait_seconds,
            poll_seconds=self.poll_seconds,
            lock_wait_seconds=self.lock_wait_seconds,
            validation_capital=self.initial_cash,
        )


class Settings(dg.ConfigurableResource):
    """Thresholds and limits; defaults are documented in the README."""

    # research: the universe and range it runs on (every stored symbol and day by default)
    research_start: str | None = None  # YYYY-MM-DD
    research_end: str | None = None
    research_symbols: list[str] = []
    # With no research_end, the sweep's window takes in new sessions once this many are stored
    # after its last run (1: every day); a run with unchanged inputs is not swept again.
    sweep_refresh_sessions: int = 21
    initial_cash: float = 100_000.0  # a backtest's starting capital
    fast_windows: list[int] = [10, 20, 50]
    slow_windows: list[int] = [100, 150, 200]
    fees: float = 0.0005
    slippage: float = 0.0005
    fraction: float = 1.0
    long_short: bool = False
    oos_fraction: float = 0.3
    min_trades: int = 10
    min_oos_sharpe: float = 0.5
    max_drawdown: float = 0.35
    min_stressed_sharpe: float = 0.0
    min_neighbor_ratio: float = 0.5
    min_deflated_sharpe: float = 0.95
    max_pbo: float = 0.5
    wf_train_days: int = 252
    wf_test_days: int = 63
    min_walk_forward_sharpe: float = 0.0
    allocation_method: Literal["max_sharpe", "min_volatility", "efficient_risk", "hrp"] = (
        "max_sharpe"
    )
    max_weight: float = 0.5
    max_gross: float = 2.0
    min_weight: float = 0.001
    l2_gamma: float = 0.0
    target_volatility: float = 0.15
    duplicate_threshold: float = 0.95  # |rho| above it: near-duplicate strategies
    max_duplicate_group_weight: float | None = None  # a group's combined cap; None: max_weight
    pending_expiry_hours: float = 24.0
    correlation_windows: list[int] = [63, 252]
    regime_shift_threshold: float = 0.10
    max_position_pct: float = 0.10
    max_gross_leverage: float = 1.0
    max_order_notional: float | None = None  # None: no limit
    max_run_notional: float | None = None  # per run at each account
    price_collar_pct: float | None = 0.05  # a limit order's price vs the reference price
    max_margin_pct: float | None = 0.40  # the broker's maintenance margin / equity
    # the book at each account: past either, trading halts until a person resumes it
    max_daily_loss_pct: float | None = 0.05  # of the previous session's equity
    max_drawdown_pct: float | None = 0.20  # from the highest session equity
    # the data quality gate (engine/data/quality.py)
    min_price: float = 0.05
    spike_threshold: float = 0.40
    revert_band: float = 0.15
    revert_days: int = 5
    max_daily_move: float = 0.75
    stale_days: int = 5
    max_missing_share: float = 0.10

    def research(self) -> tuple[date | None, date | None, list[str] | None]:
        def day(text: str | None) -> date | None:
            return date.fromisoformat(text) if text else None

        return day(self.research_start), day(self.research_end), self.research_symbols or None

    def sweep(self) -> SweepParams:
        return SweepParams(
            init_cash=self.initial_cash,
            fast_windows=tuple(self.fast_windows),
            slow_windows=tuple(self.slow_windows),
            fees=self.fees,
            slippage=self.slippage,
            fraction=self.fraction,
            long_short=self.long_short,
        )

    def gate(self) -> GateThresholds:
        return GateThresholds(
            oos_fraction=self.oos_fraction,
            min_trades=self.min_trades,
            min_oos_sharpe=self.min_oos_sharpe,
            max_drawdown=self.max_drawdown,
            min_stressed_sharpe=self.min_stressed_sharpe,
            min_neighbor_ratio=self.min_neighbor_ratio,
            min_deflated_sharpe=self.min_deflated_sharpe,
            max_pbo=self.max_pbo,
            wf_train_days=self.wf_train_days,
            wf_test_days=self.wf_test_days,
            min_walk_forward_sharpe=self.min_walk_forward_sharpe,
        )

    def constraints(self) -> AllocationConstraints:
        return AllocationConstraints(
            max_weight=self.max_weight,
            max_gross=self.max_gross,
            min_weight=self.min_weight,
            l2_gamma=self.l2_gamma,
            target_volatility=self.target_volatility,
            duplicate_threshold=self.duplicate_threshold,
            max_duplicate_group_weight=self.max_duplicate_group_weight,
        )

    def bars_gate(self) -> GateSettings:
        return GateSettings(
            min_price=self.min_price,
            spike_threshold=self.spike_threshold,
            revert_band=self.revert_band,
            revert_days=self.revert_days,
            max_daily_move=self.max_daily_move,
            stale_days=self.stale_days,
            max_missing_share=self.max_missing_share,
        )

    def risk_limits(self) -> RiskLimits:
        return RiskLimits(
            max_position_pct=self.max_position_pct,
            max_gross_leverage=self.max_gross_leverage,
            max_order_notional=self.max_order_notional,
            max_run_notional=self.max_run_notional,
            price_collar_pct=self.price_collar_pct,
            max_margin_pct=self.max_margin_pct,
            max_daily_loss_pct=self.max_daily_loss_pct,
            max_drawdown_pct=self.max_drawdown_pct,
        )
