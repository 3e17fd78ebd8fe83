"""Test database: a throwaway database per test session on the embedded PostgreSQL server (or on
the server of TRADEFLOW_TEST_SERVER_URL, a superuser URL), owned by the owner's role, migrated
once, emptied before each test; tests connect as the application's role, as the engine does.
TRADEFLOW_TEST_BACKEND (postgresql or timescaledb) makes a run stop unless its database is that
backend."""

import os
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import polars as pl
import psycopg
import pytest

from engine.storage.connection import DatabaseUrls, embedded_server_url, provision
from engine.storage.migrations import empty, migrate

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REAL_PRICES = SHARED_DATA / "us_equities_daily.parquet"


@pytest.fixture(scope="session")
def server_url() -> str:
    """A superuser's URL on the test server (maintenance database)."""
    return os.environ.get("TRADEFLOW_TEST_SERVER_URL") or embedded_server_url()


@pytest.fixture(scope="session")
def database_urls(server_url: str) -> Iterator[DatabaseUrls]:
    """A new database with the owner's and the application's roles, migrated by the owner."""
    server = server_url
    name = f"tradeflow_test_{uuid.uuid4().hex[:8]}"
    urls = provision(server, name)
    with psycopg.connect(urls.owner) as conn:
        migrate(conn)
        backend = conn.execute("SELECT DISTINCT backend FROM schema_migrations").fetchone()[0]
    expected = os.environ.get("TRADEFLOW_TEST_BACKEND")
    if expected and backend != expected:
        pytest.exit(f"TRADEFLOW_TEST_BACKEND={expected} but the test database is {backend}", 3)
    yield urls
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_url(database_urls: DatabaseUrls) -> str:
    """The application's connection to the test database (what the engine and jobs use)."""
    return database_urls.app


@pytest.fixture(scope="session")
def backend(database_urls: DatabaseUrls) -> str:
    with psycopg.connect(database_urls.owner) as conn:
        return str(conn.execute("SELECT DISTINCT backend FROM schema_migrations").fetchone()[0])


@pytest.fixture(autouse=True)
def _only_on(request: pytest.FixtureRequest) -> None:
    """``@pytest.mark.backend("timescaledb")``: a test that only means something on one backend
    (./run test runs the suite on both)."""
    marker = request.node.get_closest_marker("backend")
    if marker is not None:
        here = request.getfixturevalue("backend")
        if here != marker.args[0]:
            pytest.skip(f"{marker.args[0]} only; this run is on {here}")


@pytest.fixture
def db(database_urls: DatabaseUrls) -> str:
    """The test database, emptied by the owner; the application's URL."""
    with psycopg.connect(database_urls.owner) as conn:
        empty(conn)
    return database_urls.app


@pytest.fixture
def conn(db: str) -> Iterator[psycopg.Connection]:
    """A connection as the application's role."""
    with psycopg.connect(db) as connection:
        yield connection


@pytest.fixture
def owner_conn(db: str, database_urls: DatabaseUrls) -> Iterator[psycopg.Connection]:
    """A connection as the owner's role (what migrations and an operator use)."""
    with psycopg.connect(database_urls.owner) as connection:
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
