import argparse
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import psycopg
import pytest

from engine.approvals.workflow import approve
from engine.backtest.sma_sweep import SweepParams, sma_cross_sweep
from engine.backtest.store import record_backtest
from engine.brokers.routing import AccountSettings, BrokerRouter
from engine.brokers.simulated import SimulatedBroker
from engine.cli import build_parser, main
from engine.data.load import load_daily_bars
from engine.data.read_store import latest_prices, load_bars
from engine.data.sources import LocalFileSource
from engine.execution.executor import execute_allocation
from engine.risk.limits import RiskLimits
from engine.signals.prices import price_panel
from engine.storage.connection import DatabaseUrls
from tests.conftest import write_bars_csv
from tests.helpers import pending_allocation, store_synthetic_bars


@pytest.fixture
def cli_env(db: str, database_urls: DatabaseUrls, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TRADEFLOW_DATABASE_URL", db)
    monkeypatch.setenv("TRADEFLOW_OWNER_DATABASE_URL", database_urls.owner)
    return db


def test_approve_and_list_from_the_command_line(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with psycopg.connect(cli_env) as conn:
        pending_allocation(conn, "a1", {"sma_cross_10_100": 0.6, "sma_cross_20_150": 0.4})
    assert main(["approve", "a1", "--by", "alice"]) == 0
    approved = capsys.readouterr().out
    assert "a1: PENDING_APPROVAL -> ACTIVE by alice" in approved
    assert "while the Dagster daemon runs (./run ui)" in approved  # what sends the orders
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


def test_custom_weights_show_with_a_diff_and_expiry_from_the_command_line(
    database_urls: DatabaseUrls, cli_env: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with psycopg.connect(cli_env) as conn:
        pending_allocation(conn, "a1", {"sma_cross_10_100": 0.5, "sma_cross_20_150": 0.5})
        pending_allocation(conn, "a2", {"sma_cross_10_100": 0.2, "sma_cross_50_200": 0.5})
    assert main(["approve", "a1", "--by", "alice", "--reason", "the better one"]) == 0
    assert main(["show", "a2"]) == 0
    shown = capsys.readouterr().out
    assert "against ACTIVE a1:" in shown
    assert main(["show", "a1"]) == 0
    history = capsys.readouterr().out.split("  history:\n")[1].splitlines()[:2]
    assert [line[4:].split(" ", 2)[2] for line in history] == [
        "created as PENDING_APPROVAL by optimizer",
        "PENDING_APPROVAL -> ACTIVE by alice (the better one)",
    ]
    assert "sma_cross_10_100           50.00%   20.00%  -30.00%" in shown
    assert "sma_cross_50_200            0.00%   50.00%  +50.00%" in shown

    weights = tmp_path / "mine.csv"
    weights.write_text("strategy_id,weight\nsma_cross_10_100,0.5\nsma_cross_50_200,0.6\n")
    assert main(["custom", str(weights), "--by", "bea", "--reason", "mine"]) == 1
    assert "weight of sma_cross_50_200 is 0.6000, above the cap" in capsys.readouterr().err
    weights.write_text("strategy_id,weight\nsma_cross_10_100,0.5\nsma_cross_50_200,0.5\n")
    assert main(["custom", str(weights), "--by", "bea", "--reason", "mine"]) == 0
    out = capsys.readouterr().out
    assert "custom allocation by bea is ACTIVE" in out and "a1: ACTIVE -> ARCHIVED" in out

    with psycopg.connect(database_urls.owner) as owner:  # time passing: the owner moves it
        owner.execute("UPDATE allocations SET expires_at = now() WHERE allocation_id = 'a2'")
    assert main(["expire"]) == 0
    assert "a2: PENDING_APPROVAL -> EXPIRED" in capsys.readouterr().out
    assert main(["expire"]) == 0
    assert "nothing to expire" in capsys.readouterr().out


def test_strategy_configuration_from_the_command_line(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with psycopg.connect(cli_env) as conn:
        pending_allocation(conn, "a1", {"sma_cross_10_100": 0.5, "sma_cross_20_150": 0.5})
    args = ["strategy", "set", "sma_cross_10_100", "--by", "alice", "--reason", "calm it"]
    assert main([*args, "--exclude", "--mode", "PAPER", "--max-position-pct", "0.05"]) == 0
    out = capsys.readouterr().out
    assert "include_in_optimization True -> False" in out
    assert "trading_mode SIMULATION -> PAPER" in out
    assert (
        "sma_cross_10_100         ACTIVE   PAPER      excluded  limits: max_position_pct 5.00%"
        in out
    )
    assert main(["strategy", "list"]) == 0
    listing = capsys.readouterr().out
    assert (
        "sma_cross_20_150         ACTIVE   SIMULATION optimized limits: none; "
        "sma_cross (fast 20, slow 150)" in listing
    )
    assert main(["strategy", "show", "sma_cross_10_100"]) == 0
    assert "alice: max_position_pct None -> 0.05 (calm it)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([*args, "--max-daily-loss-pct", "lots"])
    assert "'lots' is neither a fraction nor 'none'" in capsys.readouterr().err
    assert main(["strategy", "set", "nope", "--by", "alice", "--status", "INACTIVE"]) == 1
    assert "strategy 'nope' does not exist" in capsys.readouterr().err


def test_a_signal_strategy_is_added_and_subscribed_from_the_command_line(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["strategy", "add", "dips", "--hold-days", "5", "--by", "alice"]) == 0
    out = capsys.readouterr().out
    assert "dips: signal_follow strategy created" in out
    assert "TESTING  SIMULATION excluded  limits: none; signal_follow (hold_days 5)" in out
    assert main(["subscribe", "dips", "rsi_oversold", "--min-confidence", "60"]) == 0
    assert main(["strategy", "set", "dips", "--by", "alice", "--status", "ACTIVE"]) == 1
    assert "only sma_cross strategies are validated" in capsys.readouterr().err
    assert main(["strategy", "show", "dips"]) == 0
    history = capsys.readouterr().out.splitlines()[1:]
    assert len(history) == 1 and history[0].endswith(" alice: created: signal_follow (hold_days 5)")


def test_the_signals_of_a_strategy_unknown_or_reached_by_none_say_so(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["signals", "nope"]) == 1
    captured = capsys.readouterr()
    assert captured.err == "tradeflow: strategy 'nope' does not exist\n" and captured.out == ""
    assert main(["strategy", "add", "dips", "--hold-days", "5", "--by", "alice"]) == 0
    capsys.readouterr()
    assert main(["signals", "dips", "--since", "2024-01-01"]) == 0
    assert capsys.readouterr().out == (
        "no signals reach dips since 2024-01-01 (see `tradeflow subscribe`)\n"
    )


def test_a_weight_the_database_would_refuse_is_refused_first_with_one_clear_line(
    cli_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with psycopg.connect(cli_env) as conn:
        pending_allocation(conn, "a1", {"sma_cross_10_100": 0.5, "sma_cross_20_150": 0.5})
    weights = tmp_path / "w.csv"
    weights.write_text("strategy_id,weight\nsma_cross_10_100,0.5\nsma_cross_20_150,-5e-7\n")
    assert main(["custom", str(weights), "--by", "bob", "--reason", "mine"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "tradeflow: custom weights refused: weight of sma_cross_20_150 is -5e-07; allocations "
        "are long-only\n"
    )


def test_orders_positions_and_the_live_warning_from_the_command_line(
    cli_env: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = {"sma_cross_10_100": 0.5, "sma_cross_20_50": 0.5}
    with psycopg.connect(cli_env) as conn:
        store_synthetic_bars(conn, date(2023, 1, 1), date(2024, 6, 28), n_symbols=8)
        pending_allocation(conn, "a1", weights)
        approve(conn, "a1", by="alice")
        prices = {s: p for s, (_, p) in latest_prices(conn).items()}
    broker = SimulatedBroker(cli_env, prices.get)
    router = BrokerRouter({"default": AccountSettings()}, lambda account: broker)
    report = execute_allocation(cli_env, "a1", router, RiskLimits(max_position_pct=0.25))
    assert main(["orders", "--allocation", "a1"]) == 0
    orders = capsys.readouterr().out.splitlines()
    assert len(orders) == 1 + report.planned
    assert all(" FILLED " in line and "simulated/default" in line for line in orders[1:])
    assert all(line.split()[2:4] == ["2024-06-28", "planned"] for line in orders[1:])
    assert main(["positions"]) == 0
    header, *positions = capsys.readouterr().out.splitlines()
    assert header.split() == ["broker/account", "strategy", "symbol", "qty"]
    held = {line.split()[2] for line in positions}
    assert held == set(broker.positions())
    assert main(["pnl", "--symbols"]) == 0
    pnl = capsys.readouterr().out.splitlines()
    assert pnl[0].split() == ["session", "strategy", "value", "day", "P&L", "P&L"]
    assert {line.split()[1] for line in pnl[1:3]} == set(weights)
    book = next(line for line in pnl if "(the book)" in line).split()
    rows = [
        line.split() for line in pnl[1:] if line.split()[:1] == [book[0]] and len(line.split()) == 5
    ]
    assert float(book[-1].replace(",", "")) == pytest.approx(
        sum(float(r[-1].replace(",", "")) for r in rows), abs=0.011
    )
    with pytest.raises(SystemExit):
        main(["pnl", "--days", "0"])
    assert "--days: 0 is not a positive number" in capsys.readouterr().err
    assert main(["orders", "--allocation", "a9"]) == 1
    assert capsys.readouterr().err == "tradeflow: allocation a9 does not exist\n"
    assert main(["positions", "adopt", "--mode", "SIMULATION", "--by", "al", "--reason", "x"]) == 0
    assert "our book already equals the broker's positions" in capsys.readouterr().out

    monkeypatch.delenv("TRADEFLOW_ALLOW_LIVE", raising=False)
    args = ["strategy", "set", "sma_cross_10_100", "--mode", "LIVE", "--account", "growth"]
    assert main([*args, "--by", "alice"]) == 0
    captured = capsys.readouterr()
    assert "account default -> growth" in captured.out
    assert "live trading is not enabled (TRADEFLOW_ALLOW_LIVE=yes is not set)" in captured.err


def test_quarantine_release_replace_and_reset_from_the_command_line(
    cli_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    days = ["2024-03-04", "2024-03-05", "2024-03-06", "2024-03-07"]
    rows = [
        ("COL", d, p, p + 0.5, p - 0.5, p, p, 10)
        for d, p in zip(days, (62.0, 18.9, 61.0, 60.0), strict=True)
    ]
    rows.append(("ZED", days[0], 0.0, 1.0, 0.0, 1.0, 1.0, 5))  # a zero price: replace it
    path = write_bars_csv(tmp_path / "col.csv", rows)
    with psycopg.connect(cli_env) as conn:
        assert load_daily_bars(
            conn, LocalFileSource(str(path)), date(2024, 3, 4), date(2024, 3, 7)
        ).passed
    assert main(["quarantine", "list", "--symbol", "COL"]) == 0
    listed = capsys.readouterr().out.split()
    spike_id = listed[0]
    assert listed[1:4] == ["COL", "2024-03-05", "spike"]
    args = ["--by", "ann", "--reason", "a block trade, checked with the exchange"]
    assert main(["quarantine", "release", spike_id, *args]) == 0
    assert f"{spike_id}: COL 2024-03-05 released by ann" in capsys.readouterr().out
    with psycopg.connect(cli_env) as conn:
        stored = conn.execute("SELECT close FROM bars_daily WHERE symbol = 'COL' ORDER BY ts")
        assert [r[0] for r in stored] == [62.0, 18.9, 61.0, 60.0]
        zed = conn.execute("SELECT quarantine_id FROM quarantine_bars WHERE symbol = 'ZED'")
        zed_id = str(zed.fetchone()[0])
    assert main(["quarantine", "release", zed_id, *args]) == 1
    assert "its prices are not all > 0" in capsys.readouterr().err
    values = ["--open", "1", "--high", "1.1", "--low", "0.9", "--close", "1.05", "--volume", "5"]
    assert main(["quarantine", "replace", zed_id, *values, *args]) == 0
    assert main(["quarantine", "list"]) == 0
    assert "[replaced by ann]" in capsys.readouterr().out
    with psycopg.connect(cli_env) as conn:
        decisions = conn.execute("SELECT decision, actor FROM quarantine_decisions ORDER BY 1")
        assert decisions.fetchall() == [("released", "ann"), ("replaced", "ann")]

    assert main(["reset"]) == 1
    assert "run it again with --yes" in capsys.readouterr().err
    assert main(["reset", "--yes"]) == 0
    with psycopg.connect(cli_env) as conn:
        assert conn.execute("SELECT count(*) FROM bars_daily").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM dataset").fetchone()[0] == 0


def test_backtest_trades_from_the_command_line(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with psycopg.connect(cli_env) as conn:
        store_synthetic_bars(conn, date(2023, 1, 1), date(2024, 6, 28), n_symbols=4)
        panel = price_panel(load_bars(conn))
        params = SweepParams(fast_windows=(10,), slow_windows=(50,))
        record_backtest(conn, sma_cross_sweep(panel, params), panel.start, panel.end, 4, None)
    assert main(["backtest", "trades", "sma_cross_10_50", "--limit", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("sma_cross_10_50: 3 of ") and "(2023-01-03 .. 2024-06-28)" in out[0]
    assert len(out) == 2 + 3 and all(line.split()[0].startswith("SYN") for line in out[2:])
    assert main(["backtest", "trades", "sma_cross_1_2"]) == 1
    assert "sma_cross_1_2" in capsys.readouterr().err


# Options of engine/cli/trading.py (not this change's to edit) still without a help text.


def _help_gaps(parser: argparse.ArgumentParser, path: str = "") -> list[str]:
    """Every command, argument and option under ``parser`` with no help text."""
    gaps = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helped = {choice.dest: choice.help for choice in action._choices_actions}
            for name, command in action.choices.items():
                where = f"{path} {name}".strip()
                if not helped.get(name) or not command.description:
                    gaps.append(where)
                gaps += _help_gaps(command, where)
        elif not action.help:
            gaps.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    return gaps


def test_every_command_and_option_has_a_help_text() -> None:
    parser = build_parser()
    assert _help_gaps(parser) == []
    assert parser.description and parser.description.endswith(".")


def _main_into_a_reader_that_left(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> int:
    read_end, write_end = os.pipe()
    os.close(read_end)  # `| head` that has read all it wanted
    with os.fdopen(write_end, "w") as gone, monkeypatch.context() as patch:
        patch.setattr(sys, "stdout", gone)
        return main(args)


def test_output_into_a_reader_that_left_ends_quietly_and_keeps_what_the_command_did(
    cli_env: str, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    assert _main_into_a_reader_that_left(monkeypatch, ["-h"]) == 141
    add = ["strategy", "add", "dips", "--hold-days", "5", "--by", "al"]
    assert _main_into_a_reader_that_left(monkeypatch, add) == 141
    assert capfd.readouterr().err == ""
    with psycopg.connect(cli_env) as conn:
        family = conn.execute("SELECT family FROM strategies WHERE strategy_id = 'dips'")
        assert family.fetchone() == ("signal_follow",)

    # Real processes, the interpreter's own flush at exit included, with stdout buffered or not
    # (argparse itself ignores a closed pipe when it prints -h unbuffered: 0).
    tradeflow = Path(sys.executable).with_name("tradeflow")
    for unbuffered in ("", "1"):
        env = {**os.environ, "PYTHONUNBUFFERED": unbuffered}
        for args, codes in ((["-h"], {0, 141}), (["strategy", "list"], {141})):
            read_end, write_end = os.pipe()
            os.close(read_end)
            run = subprocess.run(
                [str(tradeflow), *args],
                stdout=write_end,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            os.close(write_end)
            assert run.returncode in codes and run.stderr == "", (args, run)
