import psycopg
import pytest

from engine.cli import main
from tests.helpers import pending_allocation


@pytest.fixture
def cli_env(db: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TRADEFLOW_DATABASE_URL", db)
    return db


def test_approve_and_list_from_the_command_line(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with psycopg.connect(cli_env) as conn:
        pending_allocation(conn, "a1", {"sma_cross_10_100": 0.6, "sma_cross_20_150": 0.4})
    assert main(["approve", "a1", "--by", "alice"]) == 0
    assert "a1: PENDING_APPROVAL -> ACTIVE by alice" in capsys.readouterr().out
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    assert "a1  ACTIVE" in listing and "sma_cross_10_100" in listing and "60.00%" in listing


def test_illegal_command_line_decision_exits_non_zero_with_the_reason(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with psycopg.connect(cli_env) as conn:
        pending_allocation(conn, "a1", {"sma_cross_10_100": 0.5, "sma_cross_20_150": 0.5})
    assert main(["reject", "a1", "--by", "carol", "--reason", "too risky"]) == 0
    capsys.readouterr()
    assert main(["approve", "a1", "--by", "dave"]) == 1
    assert "a1 is REJECTED; only a PENDING_APPROVAL allocation can be approved" in (
        capsys.readouterr().err
    )
    assert main(["show", "missing"]) == 1
    assert "'missing' does not exist" in capsys.readouterr().err


def test_scanners_and_subscriptions_from_the_command_line(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with psycopg.connect(cli_env) as conn:
        pending_allocation(conn, "a1", {"sma_cross_10_100": 1.0})
    assert main(["scanner", "add", "mega", "--symbols", "AAPL, MSFT"]) == 0
    assert "mega (manual): 0 symbols; unknown: AAPL, MSFT" in capsys.readouterr().out
    assert (
        main(
            [
                "subscribe",
                "sma_cross_10_100",
                "golden_cross",
                "--min-confidence",
                "60",
                "--scanner",
                "mega",
            ]
        )
        == 0
    )
    assert "sma_cross_10_100 <- golden_cross (confidence >= 60, scanner mega)" in (
        capsys.readouterr().out
    )
    assert main(["subscribe", "sma_cross_10_100", "moon_phase"]) == 1
    assert "unknown signal type 'moon_phase'" in capsys.readouterr().err
    assert main(["scanner", "add", "Bad", "--sectors", "Energy"]) == 1
    assert "lower case" in capsys.readouterr().err
