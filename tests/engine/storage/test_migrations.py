from pathlib import Path

import psycopg
import pytest

from engine.storage.connection import ensure_database, with_database
from engine.storage.migrations import SQL_DIR, migrate, migration_files


def test_migrate_again_applies_nothing(conn: psycopg.Connection) -> None:
    assert migrate(conn) == []
    names = [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY name")]
    assert names == [p.name for p in migration_files(SQL_DIR)]


def test_plain_postgresql_backend_is_recorded_when_timescaledb_is_absent(
    conn: psycopg.Connection,
) -> None:
    has_timescale = conn.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    backend = conn.execute("SELECT DISTINCT backend FROM schema_migrations").fetchone()[0]
    assert backend == ("timescaledb" if has_timescale else "postgresql")


def test_each_migration_is_its_own_transaction(database_url: str, tmp_path: Path) -> None:
    (tmp_path / "0001_good.sql").write_text("CREATE TABLE good (x int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE half (x int); SELECT * FROM missing;")
    url = ensure_database(_server(database_url), "tradeflow_test_migrations")
    try:
        with psycopg.connect(url) as conn:
            with pytest.raises(psycopg.errors.UndefinedTable):
                migrate(conn, tmp_path)
            conn.rollback()
            applied = [r[0] for r in conn.execute("SELECT name FROM schema_migrations")]
            assert applied == ["0001_good.sql"]
            assert conn.execute("SELECT to_regclass('half')").fetchone()[0] is None
            (tmp_path / "0002_bad.sql").write_text("CREATE TABLE half (x int);")
            assert migrate(conn, tmp_path) == ["0002_bad.sql"]
            assert migrate(conn, tmp_path) == []
    finally:
        with psycopg.connect(_server(database_url), autocommit=True) as admin:
            admin.execute("DROP DATABASE IF EXISTS tradeflow_test_migrations WITH (FORCE)")


def test_misnamed_migration_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "init.sql").write_text("SELECT 1;")
    with pytest.raises(ValueError, match="init.sql"):
        migration_files(tmp_path)


def _server(url: str) -> str:
    return with_database(url, "postgres")
