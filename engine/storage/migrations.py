"""Apply ``sql/NNNN_*.sql`` in order, each once, each in its own transaction.

Applied files are recorded in ``schema_migrations``; running again is a no-op. An advisory lock
serialises concurrent runners. TimescaleDB's job scheduler works beside the migrations (the
policy 0001 adds may run while 0006 drops its aggregate): a migration that fails because a
catalog row changed under it is rolled back whole and applied again, a few times.

Each migration sees the settings ``tradeflow.timescaledb`` ('on' or
'off'), so TimescaleDB-only statements can be guarded inside the SQL without re-detecting, and
``tradeflow.compress_bars_after`` (an interval; TRADEFLOW_COMPRESS_BARS_AFTER, default 180 days).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import psycopg

from engine.storage.connection import Capabilities, detect_capabilities

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_LOCK_KEY = 7_331_001
_ATTEMPTS = 4


def compress_bars_after() -> str:
    """How old bars get before TimescaleDB compresses them (TRADEFLOW_COMPRESS_BARS_AFTER)."""
    return os.environ.get("TRADEFLOW_COMPRESS_BARS_AFTER", "180 days")


def migration_files(sql_dir: Path = SQL_DIR) -> list[Path]:
    """The migration files, in order; a misnamed .sql file is an error, not silently skipped."""
    files = sorted(sql_dir.glob("*.sql"))
    for path in files:
        if not _MIGRATION_NAME.match(path.name):
            raise ValueError(f"{path}: migration names must look like 0001_description.sql")
    return files


def pending(conn: psycopg.Connection, sql_dir: Path = SQL_DIR) -> list[Path]:
    """The migrations not applied yet (read only: the application's role may ask)."""
    files = migration_files(sql_dir)
    if conn.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,):
        return files
    applied = {r[0] for r in conn.execute("SELECT name FROM schema_migrations")}
    return [p for p in files if p.name not in applied]


def migrate(conn: psycopg.Connection, sql_dir: Path = SQL_DIR) -> list[str]:
    """Apply pending migrations (run by the owner's role); return the names applied now."""
    if not pending(conn, sql_dir):
        conn.commit()
        return []
    conn.commit()
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        caps: Capabilities = detect_capabilities(conn)
        conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   name text PRIMARY KEY,
                   applied_at timestamptz NOT NULL DEFAULT now(),
                   backend text NOT NULL)"""
        )
    applied_now: list[str] = []
    for path in migration_files(sql_dir):
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                applied = _apply(conn, path, caps)
                break
            except psycopg.Error as exc:
                if attempt == _ATTEMPTS or not _raced(exc):
                    raise
                time.sleep(0.2 * attempt)
        if applied:
            applied_now.append(path.name)
    return applied_now


def _raced(exc: psycopg.Error) -> bool:
    """A failure another session's catalog work caused (TimescaleDB's background jobs): a
    deadlock, or PostgreSQL's 'tuple concurrently updated/deleted'."""
    if isinstance(exc, psycopg.errors.DeadlockDetected):
        return True
    return isinstance(exc, psycopg.errors.InternalError_) and "concurrently" in str(exc)


def _apply(conn: psycopg.Connection, path: Path, caps: Capabilities) -> bool:
    """Apply one migration in its own transaction; False when it was applied already."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        done = conn.execute(
            "SELECT 1 FROM schema_migrations WHERE name = %s", (path.name,)
        ).fetchone()
        if done:
            return False
        conn.execute(
            "SELECT set_config('tradeflow.timescaledb', %s, true), "
            "set_config('tradeflow.compress_bars_after', %s, true)",
            ("on" if caps.timescaledb else "off", compress_bars_after()),
        )
        conn.execute(path.read_text())  # type: ignore[arg-type]
        conn.execute(
            "INSERT INTO schema_migrations (name, backend) VALUES (%s, %s)",
            (path.name, caps.backend),
        )
    return True


def recorded_backend(conn: psycopg.Connection) -> str:
    """The backend the migrations ran on: 'timescaledb' or 'postgresql'."""
    row = conn.execute("SELECT backend FROM schema_migrations ORDER BY name DESC LIMIT 1")
    return str(row.fetchone()[0])  # type: ignore[index]


def refresh_aggregates(conn: psycopg.Connection) -> list[str]:
    """Bring every TimescaleDB continuous aggregate (``bars_weekly``) up to date with its tables,
    after a load or ``empty``. Only their owner may: ``conn`` should be the owner's (the
    application's role only reads them); the ones this role may not refresh are returned, and
    left to their hourly policy. A refresh cannot run inside a transaction: this commits the
    caller's work first. Plain PostgreSQL has views instead: nothing to do."""
    conn.commit()
    found = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    views = (
        conn.execute(
            """SELECT format('%I.%I', view_schema, view_name),
                      pg_has_role(current_user, view_owner, 'USAGE')
               FROM timescaledb_information.continuous_aggregates ORDER BY 1"""
        ).fetchall()
        if found
        else []
    )
    conn.commit()
    conn.autocommit = True
    try:
        for view, may in views:
            if may:
                _refresh(conn, view)
    finally:
        conn.autocommit = False
    return [view for view, may in views if not may]


def _refresh(conn: psycopg.Connection, view: str, wait: float = 120.0) -> None:
    """Refresh ``view``; when its hourly policy (or another load) is refreshing it, wait for that
    refresh and run ours after it (it may have started before our bars were committed)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            conn.execute("CALL refresh_continuous_aggregate(%s, NULL, NULL)", (view,))
            return
        except psycopg.errors.LockNotAvailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def empty(conn: psycopg.Connection) -> None:
    """Empty every table the migrations made, in one statement (TRUNCATE bypasses the
    append-only row triggers: callers decide whether that may happen; only the owner's role
    may), and the aggregates over them; commits."""
    tables = conn.execute(
        """SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables
           WHERE schemaname IN ('public', 'sim_broker') AND tablename <> 'schema_migrations'"""
    ).fetchall()
    conn.execute("TRUNCATE " + ", ".join(t[0] for t in tables) + " RESTART IDENTITY CASCADE")  # type: ignore[arg-type]
    refresh_aggregates(conn)
