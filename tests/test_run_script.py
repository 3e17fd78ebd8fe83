"""The ./run script without a command prints its usage and nothing else (no install, no
bootstrap); an unknown command is named and refused."""

import subprocess
from pathlib import Path

RUN = Path(__file__).resolve().parents[1] / "run"
USAGE = """\
tradeflow's one entry point. Needs only Python 3.11+; everything else it installs itself.
  ./run demo [--approve-as NAME]   research pipeline -> allocation -> (approval) -> execution
  ./run test [pytest args]         the test suite, on plain PostgreSQL and on TimescaleDB
  ./run ui                         Dagster UI on http://127.0.0.1:3000
  ./run tradeflow ARGS             the command line (allocations, strategies, orders, halt...)
"""


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(RUN), *args], capture_output=True, text=True, timeout=30)


def test_run_without_a_command_prints_only_its_usage() -> None:
    for args in ((), ("help",), ("--help",)):
        result = _run(*args)
        assert (result.returncode, result.stdout, result.stderr) == (0, USAGE, "")


def test_run_names_an_unknown_command_and_fails() -> None:
    result = _run("dmeo")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == "run: unknown command 'dmeo'\n" + USAGE
