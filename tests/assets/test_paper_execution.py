"""The execute_allocation job at Alpaca paper (the fake Alpaca on 127.0.0.1, the real client),
with the account's keys read through dg.EnvVar: the orders reach the broker, the asset shows
them, and the keys appear nowhere: not in logs, errors, metadata, run config or the database;
nor can run config set keys or allow live trading."""

from datetime import date

import dagster as dg
import psycopg
import pytest

from engine.approvals.workflow import approve
from engine.data.read_store import latest_prices
from engine.strategies.config import update_strategy
from orchestration.definitions import build_definitions
from orchestration.resources import BrokerConfig, Database, MarketData, Settings
from tests.fake_alpaca import serve_alpaca
from tests.helpers import pending_allocation, store_synthetic_bars

KEY, SECRET = "PK-DAGSTER-7Q2W9", "dagster-secret-x81kz0"
WRONG_KEY, WRONG_SECRET = "PK-WRONG-4M1N8", "wrong-secret-v5b2c6"


def _everything_written(instance: dg.DagsterInstance, db: str) -> str:
    """Every event, run config and error of every run, and every row of every table."""
    texts = []
    for run in instance.get_runs():
        texts.append(repr(run.run_config))
        texts += [repr(record) for record in instance.all_logs(run.run_id)]
    with psycopg.connect(db) as conn:
        tables = conn.execute(
            """SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables
               WHERE schemaname IN ('public', 'sim_broker')"""
        ).fetchall()
        for (table,) in tables:
            texts += [r[0] for r in conn.execute(f"SELECT row_to_json(t)::text FROM {table} t")]
    return "\n".join(texts)


def test_paper_orders_through_the_job_and_the_keys_appear_nowhere(
    db: str,
    conn: psycopg.Connection,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    store_synthetic_bars(conn, date(2023, 1, 1), date(2024, 6, 28), n_symbols=8)
    pending_allocation(conn, "a1", {"sma_cross_10_100": 0.5, "sma_cross_20_50": 0.5})
    for sid in ("sma_cross_10_100", "sma_cross_20_50"):
        update_strategy(conn, sid, "alice", trading_mode="PAPER")
    approve(conn, "a1", by="alice")
    conn.commit()
    prices = {s: p for s, (_, p) in latest_prices(conn).items()}
    instance = dg.DagsterInstance.ephemeral()
    run_config = {"ops": {"executed_orders": {"config": {"allocation_id": "a1"}}}}
    with serve_alpaca(KEY, SECRET, prices=prices) as fake:
        defs = build_definitions(
            {
                "database": Database(url=db),
                "market_data": MarketData(n_symbols=8, seed=7),
                "broker": BrokerConfig(
                    paper_url=fake.base_url,
                    fill_wait_seconds=5.0,
                    poll_seconds=0.02,
                ),
                "settings": Settings(max_position_pct=0.25),
            }
        )
        job = defs.resolve_job_def("execute_allocation")
        for sneaked in ({"allow_live": "yes"}, {"live_api_key": "PK-X"}, {"accounts": [{}]}):
            with pytest.raises(dg.DagsterInvalidConfigError):
                dg.validate_run_config(
                    job, {**run_config, "resources": {"broker": {"config": sneaked}}}
                )
        monkeypatch.setenv("ALPACA_PAPER_API_KEY", WRONG_KEY)
        monkeypatch.setenv("ALPACA_PAPER_SECRET_KEY", WRONG_SECRET)
        refused = job.execute_in_process(
            run_config=run_config, instance=instance, raise_on_error=False
        )
        assert not refused.success and fake.orders_by_client_id() == {}
        failure = refused.get_step_failure_events()[0].event_specific_data.error  # type: ignore[union-attr]
        assert "refused the keys (HTTP 401)" in failure.cause.message

        monkeypatch.setenv("ALPACA_PAPER_API_KEY", KEY)
        monkeypatch.setenv("ALPACA_PAPER_SECRET_KEY", SECRET)
        result = job.execute_in_process(run_config=run_config, instance=instance)
        assert result.success
        sent = fake.orders_by_client_id()
    assert sent and all(o["status"] == "filled" for o in sent.values())
    metadata = result.asset_materializations_for_node("executed_orders")[0].metadata
    assert metadata["brokers"].value == "alpaca-paper/default"
    table = metadata["order_table"].value
    assert all(coid_symbol in table for coid_symbol in {o["symbol"] for o in sent.values()})
    assert "| FILLED | sma_cross_" in table

    written = _everything_written(instance, db) + "\n".join(capfd.readouterr())
    assert "alpaca-paper" in written and "BrokerAuthError" in written  # it read what it should
    for secret in (KEY, SECRET, WRONG_KEY, WRONG_SECRET):
        assert secret not in written
