import os
from pathlib import Path

import psycopg
import pytest

from engine.storage.connection import Capabilities, detect_capabilities, ensure_database
from engine.storage.migrations import SQL_DIR, migrate, migration_files


def test_migrate_again_applies_nothing(conn: psycopg.Connection) -> None:
    assert migrate(conn) == []
    names = [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY name")]
    assert names == [p.name for p in migration_files(SQL_DIR)]


def test_the_backend_is_timescaledb_exactly_when_the_server_can_load_it(
    owner_conn: psycopg.Connection, server_url: str
) -> None:
    with psycopg.connect(server_url) as admin:
        preloaded = "timescaledb" in admin.execute("SHOW shared_preload_libraries").fetchone()[0]
    files = owner_conn.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    backend = owner_conn.execute("SELECT DISTINCT backend FROM schema_migrations").fetchone()[0]
    wanted = os.environ.get("TRADEFLOW_TIMESCALEDB", "on") != "off"
    assert backend == ("timescaledb" if preloaded and files and wanted else "postgresql")


@pytest.mark.backend("postgresql")
def test_detection_does_not_load_an_extension_the_server_does_not_preload(
    owner_conn: psycopg.Connection,
) -> None:
    """The files of TimescaleDB in the wheel make every server list it; a server that does not
    preload it drops the connection on CREATE EXTENSION. Detection must not try (./run test
    installs the files before its plain run, so this is the case there)."""
    assert detect_capabilities(owner_conn) == Capabilities(timescaledb=False)
    assert owner_conn.execute("SELECT 1").fetchone() == (1,)
    assert not owner_conn.execute(
        "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'"
    ).fetchone()


def test_each_migration_is_its_own_transaction(server_url: str, tmp_path: Path) -> None:
    (tmp_path / "0001_good.sql").write_text("CREATE TABLE good (x int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE half (x int); SELECT * FROM missing;")
    url = ensure_database(server_url, "tradeflow_test_migrations")
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
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute("DROP DATABASE IF EXISTS tradeflow_test_migrations WITH (FORCE)")


def test_a_migration_a_background_job_raced_is_applied_again_whole(
    server_url: str, tmp_path: Path
) -> None:
    """TimescaleDB's scheduler may run 0001's policy while 0006 drops its aggregate: PostgreSQL
    then fails the DROP with 'tuple concurrently deleted' (seen in CI). A sequence counts the
    attempts, since nextval survives the rollback: the first fails so, the second applies."""
    (tmp_path / "0001_raced.sql").write_text(
        "CREATE TABLE half (x int);"
        "DO $$ BEGIN IF nextval('attempts') = 1 THEN "
        "RAISE EXCEPTION 'tuple concurrently deleted' USING ERRCODE = 'XX000'; END IF; END $$;"
    )
    (tmp_path / "0002_broken.sql").write_text("SELECT * FROM missing;")
    url = ensure_database(server_url, "tradeflow_test_migration_race")
    try:
        with psycopg.connect(url) as conn:
            conn.execute("CREATE SEQUENCE attempts")
            conn.commit()
            with pytest.raises(psycopg.errors.UndefinedTable):
                migrate(conn, tmp_path)
            conn.rollback()
            applied = [r[0] for r in conn.execute("SELECT name FROM schema_migrations")]
            assert applied == ["0001_raced.sql"]
            assert conn.execute("SELECT last_value FROM attempts").fetchone() == (2,)
            assert conn.execute("SELECT to_regclass('half')").fetchone()[0] == "half"
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute("DROP DATABASE IF EXISTS tradeflow_test_migration_race WITH (FORCE)")


def test_misnamed_migration_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "init.sql").write_text("SELECT 1;")
    with pytest.raises(ValueError, match="init.sql"):
        migration_files(tmp_path)
