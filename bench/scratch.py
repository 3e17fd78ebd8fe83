"""What the benches share: a scratch database, and the line saying where and when they ran."""

import os
import platform
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date

import psycopg

from engine.storage.connection import DatabaseUrls, embedded_server_url, provision
from engine.storage.migrations import migrate


def bench_server() -> str:
    """TRADEFLOW_BENCH_SERVER_URL (a superuser URL), else the embedded server's."""
    return os.environ.get("TRADEFLOW_BENCH_SERVER_URL") or embedded_server_url()


@contextmanager
def scratch_database(prefix: str) -> Iterator[DatabaseUrls]:
    """A new database with the owner's and the application's roles, migrated; dropped after."""
    server = bench_server()
    name = f"tradeflow_bench_{prefix}_{uuid.uuid4().hex[:6]}"
    urls = provision(server, name)
    try:
        with psycopg.connect(urls.owner) as conn:
            migrate(conn)
        yield urls
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


def machine() -> str:
    return f"{date.today()}, {os.cpu_count()} cores, {platform.machine()}, load {os.getloadavg()}"
