"""Test database: a throwaway database per test session on the embedded PostgreSQL server (or on
the server of TRADEFLOW_TEST_SERVER_URL), migrated once and emptied before each test."""

import os
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import polars as pl
import psycopg
import pytest

from engine.storage.connection import embedded_server_url, ensure_database
from engine.storage.migrations import migrate

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REAL_PRICES = SHARED_DATA / "us_equities_daily.parquet"


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    server = os.environ.get("TRADEFLOW_TEST_SERVER_URL") or embedded_server_url()
    name = f"tradeflow_test_{uuid.uuid4().hex[:8]}"
    url = ensure_database(server, name)
    with psycopg.connect(url) as conn:
        migrate(conn)
    yield url
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db(database_url: str) -> str:
    """The test database, emptied (TRUNCATE bypasses the append-only row triggers)."""
    with psycopg.connect(database_url) as conn:
        tables = conn.execute(
            """SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables
               WHERE schemaname IN ('public', 'sim_broker') AND tablename <> 'schema_migrations'"""
        ).fetchall()
        conn.execute("TRUNCATE " + ", ".join(t[0] for t in tables) + " RESTART IDENTITY CASCADE")
    return database_url


@pytest.fixture
def conn(db: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(db) as connection:
        yield connection


def write_bars_csv(path: Path, rows: list[tuple]) -> Path:
    """A bars file in the long layout from (symbol, date, open, high, low, close, adj, volume)."""
    frame = pl.DataFrame(
        rows,
        schema=["symbol", "date", "open", "high", "low", "close", "adj_close", "volume"],
        orient="row",
    )
    frame.write_csv(path)
    return path


@pytest.fixture
def real_prices() -> Path:
    if not REAL_PRICES.exists():
        pytest.fail(f"{REAL_PRICES} is missing: tests read the shared real data set")
    return REAL_PRICES


SMALL_RANGE = (date(2023, 1, 1), date(2024, 12, 31))
