import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from engine.storage.connection import ensure_database

INSTANCE_FILES = Path(__file__).resolve().parents[2] / "orchestration" / "instance"


@pytest.fixture
def dagster_pg_url(server_url: str) -> Iterator[str]:
    server = server_url
    url = ensure_database(server, "tradeflow_test_dagster")
    yield url
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS tradeflow_test_dagster WITH (FORCE)")


def test_dagster_storage_moves_to_postgres_when_dagster_pg_url_is_set(
    tmp_path: Path, dagster_pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(INSTANCE_FILES / "dagster.postgres.yaml", tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_PG_URL", dagster_pg_url)
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert dg.materialize([_probe], instance=instance).success
        assert len(instance.get_runs()) == 1
    finally:
        instance.dispose()
    assert dagster_pg_url not in (tmp_path / "dagster.yaml").read_text()


@dg.asset
def _probe() -> None:
    """A trivial asset whose run must land in PostgreSQL."""
