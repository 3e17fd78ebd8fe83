"""The demo, end to end, against a database named by TRADEFLOW_DATABASE_URL (how production
runs): the application's role for the jobs, the sensor and the summary, the owner's for the
migrations. It crashed after the pipeline when the URL came from the environment, and said
"embedded database" whatever it used."""

from pathlib import Path

import psycopg
import pytest

from engine.storage.connection import DatabaseUrls, describe
from orchestration import demo


def test_the_demo_runs_end_to_end_on_a_database_from_the_environment(
    db: str,
    database_urls: DatabaseUrls,
    backend: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TRADEFLOW_DATABASE_URL", database_urls.app)
    monkeypatch.setenv("TRADEFLOW_OWNER_DATABASE_URL", database_urls.owner)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    assert demo.main(["--approve-as", "tester"]) == 0
    out = capsys.readouterr().out
    assert f"(synthetic, {describe(database_urls.app)}, {backend})" in out
    assert "approved by tester" in out and "approvals_sensor -> execute_allocation" in out
    # After the approval, the window's last five sessions are stored and traded one at a time.
    later = ["2024-12-24", "2024-12-26", "2024-12-27", "2024-12-30", "2024-12-31"]
    for day in later:
        assert "daily_execution_sensor -> execute_allocation (run_key alloc-20241223-" in out
        assert f"@{day})" in out
    assert "sessions executed  6 (2024-12-23 .. 2024-12-31)" in out
    assert "positions at 2024-12-31: " in out
    for day in ["2024-12-23", *later]:  # each session's book report, every check passing
        assert f"book_report_sensor -> book_report (run_key book@{day})" in out
    assert "check " not in out
    with psycopg.connect(db) as conn:
        filled = conn.execute("SELECT count(*) FROM orders WHERE status = 'FILLED'").fetchone()
        weeks = conn.execute("SELECT count(*) FROM bars_weekly").fetchone()
    assert filled is not None and filled[0] > 0 and f"orders FILLED      {filled[0]}" in out
    assert weeks == (4280,)  # 20 symbols x 214 weeks of the demo's window, all of history
    assert "postgresql://" not in out
