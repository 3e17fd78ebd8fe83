"""The project's own embedded server preloads TimescaleDB when the wheel has its files, so a user
who installs the extension gets hypertables with nothing else to do."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.storage.connection import _pg_ctl, timescaledb_installed

PROBE = """
import psycopg
from engine.storage.connection import resolve_urls
from engine.storage.migrations import migrate, recorded_backend
urls = resolve_urls()
with psycopg.connect(urls.owner) as conn:
    migrate(conn)
    backend = recorded_backend(conn)
    tables = "SELECT count(*) FROM timescaledb_information.hypertables"
    print(backend, conn.execute(tables).fetchone()[0] if backend == "timescaledb" else 0)
with psycopg.connect(urls.app) as conn:
    print(conn.info.user)
"""


def _probe(home: Path, **env: str) -> list[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TRADEFLOW_")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**environment, "TRADEFLOW_HOME": str(home), **env},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


@pytest.mark.backend("timescaledb")
def test_the_embedded_server_preloads_timescaledb_once_its_files_are_installed(
    tmp_path: Path,
) -> None:
    assert timescaledb_installed()  # ./run test installs them before the TimescaleDB run
    home = tmp_path / "home"
    try:
        backend, hypertables, user = _probe(home)
        assert (backend, user) == ("timescaledb", "tradeflow_app")
        assert int(hypertables) >= 6
        conf = (home / "pg" / "postgresql.conf").read_text()
        assert "shared_preload_libraries = 'timescaledb'" in conf
        # off: new databases stay plain, but a server is never made to stop preloading it (a
        # database using the extension needs it).
        assert _probe(home, TRADEFLOW_TIMESCALEDB="off")[0] == "timescaledb"
        assert (
            "shared_preload_libraries = 'timescaledb'"
            in (home / "pg" / "postgresql.conf").read_text()
        )
    finally:
        if (home / "pg" / "postmaster.pid").exists():
            _pg_ctl(home / "pg", "embedded_postgres" if os.geteuid() == 0 else None, "stop")
