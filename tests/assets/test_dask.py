"""The research pipeline fanned out on a real Dask cluster (dagster-dask's executor on a
LocalCluster with two worker processes), the scan's symbols and the sweep's pairs in three
shards each, stores what the single-process run stores unsharded."""

import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from assets.market_data import partition_key_range
from engine.storage.connection import DatabaseUrls, provision
from engine.storage.migrations import migrate
from engine.strategies.config import add_signal_strategy
from engine.strategies.subscriptions import subscribe
from orchestration.definitions import build_definitions
from tests.dask_job import OWNER_URL_ENV, SHARDS, URL_ENV, research_on_dask, resources

START, END = date(2022, 1, 3), date(2024, 6, 28)
# Everything but the allocation: 8 symbols over this window recommend none (the validation gate
# passes no strategy, as it rightly may), and the rest is what fans out.
SELECTION = [
    dg.AssetKey(k)
    for k in (
        "bars_daily",
        "signals",
        "backtests",
        "signal_backtests",
        "validations",
        "correlations",
    )
]
FOLLOWERS = [
    ("momentum-followers", 20, "momentum_top"),
    ("rsi-followers", 10, "rsi_oversold"),
    ("breakout-followers", 5, "donchian_breakout_up"),
]
# What the research stores, without ids, run ids and timestamps: each row as a string.
RESULTS = {
    "signals": "SELECT symbol, ts, signal_type, direction, confidence FROM signals",
    "backtest_metrics": """SELECT strategy_id, total_return, annualized_return, volatility, sharpe,
                                  sortino, calmar, max_drawdown, max_drawdown_days, win_rate,
                                  profit_factor, expectancy, exposure, trades, sharpe_2x_costs
                           FROM backtest_metrics""",
    "backtest_trades": "SELECT strategy_id, symbol, entry_ts FROM backtest_trades",
    "strategy_returns": "SELECT strategy_id, ts, ret FROM strategy_returns",
    "validation_verdicts": "SELECT strategy_id, passed, reasons FROM validation_verdicts",
    "correlations": "SELECT as_of, kind, window_days, a, b, rho FROM correlations",
}


@pytest.fixture
def second_database(server_url: str) -> Iterator[DatabaseUrls]:
    name = f"tradeflow_test_dask_{uuid.uuid4().hex[:8]}"
    urls = provision(server_url, name)
    with psycopg.connect(urls.owner) as conn:
        migrate(conn)
    yield urls
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _tags() -> dict[str, str]:
    keys = partition_key_range(START, END)
    return {ASSET_PARTITION_RANGE_START_TAG: keys.start, ASSET_PARTITION_RANGE_END_TAG: keys.end}


def _stored(url: str) -> dict[str, list[str]]:
    with psycopg.connect(url) as conn:
        return {
            table: sorted(str(row) for row in conn.execute(query).fetchall())
            for table, query in RESULTS.items()
        }


@pytest.mark.backend("postgresql")
def test_the_research_on_two_dask_workers_stores_what_one_process_stores(
    db: str,
    database_urls: DatabaseUrls,
    second_database: DatabaseUrls,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for url in (db, second_database.app):  # three signal strategies: one per shard on Dask
        with psycopg.connect(url) as conn:
            for sid, hold, signal_type in FOLLOWERS:
                add_signal_strategy(conn, sid, hold, "alice")
                subscribe(conn, sid, signal_type, 0.0)
    one = build_definitions(resources(db, database_urls.owner), shards=1).resolve_job_def(
        "research_pipeline"
    )
    alone = one.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), tags=_tags(), asset_selection=SELECTION
    )
    assert alone.success

    monkeypatch.setenv(URL_ENV, second_database.app)
    monkeypatch.setenv(OWNER_URL_ENV, second_database.owner)
    with dg.DagsterInstance.local_temp(str(tmp_path)) as instance:
        result = dg.execute_job(
            dg.reconstructable(research_on_dask),
            instance=instance,
            tags=_tags(),
            asset_selection=SELECTION,
            run_config={
                "execution": {"config": {"cluster": {"local": {"n_workers": 2, "processes": True}}}}
            },
        )
        assert result.success
        started = [e for e in result.all_events if e.event_type_value == "STEP_START"]
    workers = {e.pid for e in started if e.pid}
    assert len(workers) == 2, f"steps ran in {len(workers)} worker processes"
    for asset in ("signals", "backtests", "signal_backtests"):
        shards = {e.step_key for e in started if f"{asset}.{asset}_shard_" in str(e.step_key)}
        assert len(shards) == SHARDS, (asset, shards)
    ours, theirs = _stored(db), _stored(second_database.app)
    followed = {row.split("'")[1] for row in ours["backtest_metrics"]} & {f[0] for f in FOLLOWERS}
    assert followed == {f[0] for f in FOLLOWERS}
    for table in RESULTS:
        assert ours[table], f"{table} is empty"
        assert theirs[table] == ours[table], table
