"""The alert sensors against a local webhook receiver and the real test database."""

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import psycopg
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from engine.approvals.workflow import approve
from engine.brokers.routing import AccountSettings, BrokerRouter
from engine.brokers.simulated import SimulatedBroker
from engine.data.calendar import trading_days
from engine.data.read_store import latest_bar_day, latest_prices
from engine.errors import ConfigurationError
from engine.execution.executor import execute_allocation
from engine.execution.halts import halt, resume
from engine.risk.limits import RiskLimits
from engine.storage.connection import OWNER_ROLE, with_user
from orchestration.alerts import (
    ALERT_WEBHOOK_ENV,
    Alerts,
    EventCursor,
    blocked_order_alerts,
    failed_check_alerts,
    missing_session,
    run_failure_alerts,
    stale_bars_result,
    trading_halt_alerts,
)
from orchestration.definitions import build_definitions, default_resources
from orchestration.resources import BrokerConfig, Database, MarketData, Settings
from tests.conftest import write_bars_csv
from tests.engine.test_alerts import SECRET, FakeWebhook, dead_url, serve_webhook
from tests.helpers import pending_allocation, store_synthetic_bars

NY = ZoneInfo("America/New_York")
ALERT_SENSOR_NAMES = [
    "run_failure_alerts",
    "trading_halt_alerts",
    "blocked_order_alerts",
    "failed_check_alerts",
    "stale_bars_alerts",
]


def _tick(
    sensor: dg.SensorDefinition, db: str, url: str | None, cursor: str | None
) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=dg.DagsterInstance.ephemeral(),
        cursor=cursor,
        resources={"database": Database(url=db), "alerts": Alerts(webhook_url=url, retries=0)},
    )
    return sensor(context)


def _texts(hook: FakeWebhook) -> list[str]:
    return [post.json()["text"] for post in hook.posts]


def test_each_halt_and_resume_is_alerted_once(conn: psycopg.Connection, db: str) -> None:
    with serve_webhook() as hook:
        quiet = _tick(trading_halt_alerts, db, hook.url, None)
        assert hook.posts == [] and quiet.skip_reason is not None
        halt(conn, "risk desk", "daily loss limit", flatten=True)
        conn.commit()
        first = _tick(trading_halt_alerts, db, hook.url, quiet.cursor)
        [text] = _texts(hook)
        assert text.startswith("[tradeflow] trading HALTED by risk desk: daily loss limit\n")
        payload = hook.posts[0].json()
        assert payload["kind"] == "trading_halt"
        assert payload["fields"]["halted"] is True and payload["fields"]["flatten"] is True
        assert "halt and flatten by risk desk" in payload["text"]
        again = _tick(trading_halt_alerts, db, hook.url, first.cursor)
        assert len(hook.posts) == 1
        resume(conn, "alice", "reviewed")
        conn.commit()
        _tick(trading_halt_alerts, db, hook.url, again.cursor)
    assert len(hook.posts) == 2
    assert hook.posts[1].json()["text"].startswith("[tradeflow] trading resumed by alice")
    assert all(SECRET not in post.body.decode() for post in hook.posts)


def test_a_halt_committed_after_a_higher_id_was_alerted_is_still_alerted_once(
    conn: psycopg.Connection, db: str
) -> None:
    halt(conn, "risk desk", "first")
    halt(conn, "risk desk", "second")
    conn.commit()
    ids = [r[0] for r in conn.execute("SELECT event_id FROM trading_halts ORDER BY event_id")]
    # As if the tick before had seen only the second (the first's transaction not committed).
    cursor = EventCursor(ids[1], {ids[1]: datetime.now(NY).timestamp()}).dump()
    with serve_webhook() as hook:
        late = _tick(trading_halt_alerts, db, hook.url, cursor)
        _tick(trading_halt_alerts, db, hook.url, late.cursor)
    assert len(hook.posts) == 1 and "first" in hook.posts[0].json()["text"]
    assert "second" not in hook.posts[0].json()["text"]


def test_a_webhook_that_is_down_fails_no_tick_and_the_alert_follows_once_it_is_up(
    conn: psycopg.Connection, db: str, capfd: pytest.CaptureFixture[str]
) -> None:
    halt(conn, "risk desk", "drawdown")
    conn.commit()
    down = _tick(trading_halt_alerts, db, dead_url(), None)
    assert down.cursor is None and down.skip_reason is not None
    assert "webhook unreachable" in (down.skip_reason.skip_message or "")
    with serve_webhook() as hook:
        up = _tick(trading_halt_alerts, db, hook.url, down.cursor)
        _tick(trading_halt_alerts, db, hook.url, up.cursor)
    assert len(hook.posts) == 1 and "HALTED by risk desk: drawdown" in _texts(hook)[0]
    out, err = capfd.readouterr()
    assert SECRET not in out + err


def test_blocked_orders_are_alerted_once_with_the_rules_they_failed(
    conn: psycopg.Connection, db: str
) -> None:
    store_synthetic_bars(conn, date(2023, 1, 1), date(2024, 6, 28), n_symbols=8)
    pending_allocation(conn, "a1", {"sma_cross_10_100": 0.5, "sma_cross_20_50": 0.5})
    approve(conn, "a1", by="alice")
    conn.commit()
    prices = {s: p for s, (_, p) in latest_prices(conn).items()}
    broker = SimulatedBroker(db, prices.get)
    router = BrokerRouter({broker.account_name: AccountSettings()}, lambda account: broker)
    tiny = RiskLimits(max_position_pct=0.25, max_gross_leverage=1.0, max_order_notional=1.0)
    report = execute_allocation(db, "a1", router, tiny)
    assert report.blocked == report.planned > 0
    with serve_webhook() as hook:
        first = _tick(blocked_order_alerts, db, hook.url, None)
        _tick(blocked_order_alerts, db, hook.url, first.cursor)
    [post] = hook.posts
    payload = post.json()
    assert payload["kind"] == "orders_blocked"
    assert payload["fields"]["orders"] == report.blocked
    assert payload["fields"]["allocations"] == "a1"
    assert f"{report.blocked} order(s) BLOCKED by the risk checks" in payload["text"]
    assert payload["text"].count("max_order_notional: ") == min(report.blocked, 20)


def test_a_failed_warning_check_is_alerted_once_and_passed_checks_are_not(
    db: str, tmp_path: Path
) -> None:
    days = trading_days(date(2024, 1, 2), date(2024, 1, 16))
    symbols = [f"S{chr(65 + i)}" for i in range(20)]
    rows = [
        (symbol, day.isoformat(), p, p * 1.01, p * 0.99, p, p, 1_000_000)
        for i, symbol in enumerate(symbols)
        for n, day in enumerate(days)
        if not (symbol == "SA" and n == 4)  # one session missing inside SA's span
        for p in [50.0 + i + 0.1 * n]
    ]
    defs = build_definitions(
        {
            "database": Database(url=db, owner_url=with_user(db, OWNER_ROLE)),
            "market_data": MarketData(
                source="files", path=str(write_bars_csv(tmp_path / "bars.csv", rows))
            ),
            "broker": BrokerConfig(),
            "settings": Settings(),
        }
    )
    # ./run's instance: SQLite, a database per run (event ids are not comparable across runs)
    (tmp_path / "dagster_home").mkdir()
    instance = dg.DagsterInstance.local_temp(str(tmp_path / "dagster_home"))
    result = defs.resolve_job_def("research_pipeline").execute_in_process(
        instance=instance,
        tags={
            ASSET_PARTITION_RANGE_START_TAG: days[0].isoformat(),
            ASSET_PARTITION_RANGE_END_TAG: days[-1].isoformat(),
        },
        asset_selection=[dg.AssetKey("bars_daily")],
    )
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evaluations["bars_quality"].passed and not evaluations["bars_complete"].passed
    with serve_webhook() as hook:

        def tick(cursor: str | None) -> dg.SensorResult:
            context = dg.build_sensor_context(
                instance=instance, cursor=cursor, resources={"alerts": Alerts(webhook_url=hook.url)}
            )
            return failed_check_alerts(context)

        first = tick(None)
        second = tick(first.cursor)
    assert second.cursor == first.cursor and second.skip_reason is not None
    [post] = hook.posts
    payload = post.json()
    assert payload["kind"] == "check_failed"
    assert payload["fields"]["checks"] == "bars_daily:bars_complete"
    assert payload["fields"]["runs"] == result.run_id
    assert "bars_daily bars_complete (WARN" in payload["text"]


def test_a_failed_run_is_alerted_with_its_job_run_id_and_error() -> None:
    @dg.asset
    def vendor_prices() -> None:
        raise RuntimeError(f"vendor down: GET https://api.example.com/bars?apiKey={SECRET}")

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([vendor_prices], instance=instance, raise_on_error=False)
    assert not result.success
    [failure] = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    with serve_webhook() as hook:
        context = dg.build_run_status_sensor_context(
            sensor_name="run_failure_alerts",
            dagster_instance=instance,
            dagster_run=result.dagster_run,
            dagster_event=failure.dagster_event,
            resources={"alerts": Alerts(webhook_url=hook.url)},
        ).for_run_failure()
        run_failure_alerts(context)
    [post] = hook.posts
    payload = post.json()
    assert payload["kind"] == "run_failure"
    assert payload["fields"]["job"] == result.dagster_run.job_name
    assert payload["fields"]["run_id"] == result.run_id
    assert (
        "vendor_prices: RuntimeError: vendor down: GET https://[url]" in payload["fields"]["error"]
    )
    assert f"failed (run {result.run_id})" in payload["text"]
    assert SECRET not in post.body.decode()


def test_a_failed_run_with_the_webhook_down_does_not_fail_the_sensor() -> None:
    @dg.asset
    def broken() -> None:
        raise RuntimeError("boom")

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([broken], instance=instance, raise_on_error=False)
    [failure] = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alerts",
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=failure.dagster_event,
        resources={"alerts": Alerts(webhook_url=dead_url(), retries=0)},
    ).for_run_failure()
    assert run_failure_alerts(context) is None


def _ny(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=NY)


@pytest.mark.parametrize(
    ("latest", "now", "deadline", "missing"),
    [
        (date(2024, 6, 27), "2024-06-28 17:59", "18:00", None),  # not due yet
        (date(2024, 6, 27), "2024-06-28 18:00", "18:00", date(2024, 6, 28)),
        (date(2024, 6, 28), "2024-06-28 18:30", "18:00", None),  # stored
        (date(2024, 6, 27), "2024-06-30 12:00", "18:00", date(2024, 6, 28)),  # the weekend
        (date(2024, 7, 3), "2024-07-04 23:00", "18:00", None),  # Independence Day
        (date(2024, 7, 2), "2024-07-03 12:59", "12:00", None),  # early close: due at 13:00
        (date(2024, 7, 2), "2024-07-03 13:00", "12:00", date(2024, 7, 3)),
        (None, "2024-07-03 20:00", "18:00", None),  # nothing stored: not late
    ],
)
def test_the_missing_session_is_the_newest_one_past_its_deadline(
    latest: date | None, now: str, deadline: str, missing: date | None
) -> None:
    due = datetime.strptime(deadline, "%H:%M").time()
    assert missing_session(latest, _ny(now), due) == missing


def test_stale_bars_are_alerted_once_per_missing_session(conn: psycopg.Connection, db: str) -> None:
    store_synthetic_bars(conn, date(2024, 6, 3), date(2024, 6, 28), n_symbols=3)
    assert latest_bar_day(conn) == date(2024, 6, 28)

    def tick(url: str, cursor: str | None, now: str) -> dg.SensorResult:
        context = dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), cursor=cursor)
        return stale_bars_result(context, Database(url=db), Alerts(webhook_url=url), _ny(now))

    with serve_webhook() as hook:
        early = tick(hook.url, None, "2024-07-01 17:00")
        assert early.cursor is None and hook.posts == []
        down = tick(dead_url(), early.cursor, "2024-07-01 18:05")
        assert down.cursor is None and hook.posts == []
        first = tick(hook.url, down.cursor, "2024-07-01 18:10")
        again = tick(hook.url, first.cursor, "2024-07-01 22:00")
        next_day = tick(hook.url, again.cursor, "2024-07-02 18:10")
    assert (first.cursor, again.cursor, next_day.cursor) == (
        "2024-07-01",
        "2024-07-01",
        "2024-07-02",
    )
    assert _texts(hook) == [
        "[tradeflow] no daily bars for session 2024-07-01 by 18:00 New York\n"
        "the latest stored session is 2024-06-28",
        "[tradeflow] no daily bars for session 2024-07-02 by 18:00 New York\n"
        "the latest stored session is 2024-06-28",
    ]
    assert hook.posts[0].json()["fields"] == {
        "session": "2024-07-01",
        "latest_stored": "2024-06-28",
        "deadline": "18:00 America/New_York",
    }


def test_the_definitions_read_the_webhook_only_from_its_variable(
    conn: psycopg.Connection, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert default_resources()["alerts"].webhook_url is None  # unset: alerts are only logged
    halt(conn, "risk desk", "drawdown")
    conn.commit()
    with serve_webhook() as hook:
        monkeypatch.setenv(ALERT_WEBHOOK_ENV, hook.url)
        resources = default_resources()
        assert SECRET not in repr(resources["alerts"])  # bound as EnvVar, read when used
        context = dg.build_sensor_context(
            instance=dg.DagsterInstance.ephemeral(),
            resources={"database": Database(url=db), "alerts": resources["alerts"]},
        )
        trading_halt_alerts(context)
    assert len(hook.posts) == 1 and "HALTED by risk desk" in _texts(hook)[0]
    defs = build_definitions(resources)
    running = dg.DefaultSensorStatus.RUNNING
    assert {s: defs.resolve_sensor_def(s).default_status for s in ALERT_SENSOR_NAMES} == {
        "run_failure_alerts": running,
        "trading_halt_alerts": running,
        "blocked_order_alerts": running,
        "failed_check_alerts": running,
        "stale_bars_alerts": dg.DefaultSensorStatus.STOPPED,  # like daily_research
    }


def test_a_deadline_that_is_not_a_time_is_refused_naming_the_setting() -> None:
    with pytest.raises(ConfigurationError, match="alerts.stale_bars_deadline must be HH:MM"):
        Alerts(stale_bars_deadline="6pm").deadline()
