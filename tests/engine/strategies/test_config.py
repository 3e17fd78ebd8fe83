"""Strategy configuration: validated changes with an append-only audit trail."""

import psycopg
import pytest

from engine.errors import ConfigurationError
from engine.strategies.config import get_strategy, update_strategy
from engine.strategies.store import config_history
from tests.helpers import pending_allocation

A = "sma_cross_10_100"
WEIGHTS = {A: 0.5, "sma_cross_20_150": 0.5}


def test_strategy_configuration_changes_are_validated_and_audited(
    conn: psycopg.Connection,
) -> None:
    pending_allocation(conn, "a", WEIGHTS)
    changes = update_strategy(
        conn,
        A,
        "alice",
        "paper first",
        trading_mode="PAPER",
        include_in_optimization=False,
        risk_limits={"max_position_pct": 0.05},
    )
    assert changes == [
        ("trading_mode", "SIMULATION", "PAPER"),
        ("include_in_optimization", True, False),
        ("max_position_pct", None, 0.05),
    ]
    config = get_strategy(conn, A)
    assert (config.trading_mode, config.include_in_optimization) == ("PAPER", False)
    assert config.risk_limits == {"max_position_pct": 0.05}
    assert update_strategy(conn, A, "bob", trading_mode="PAPER") == []  # no change, no event
    update_strategy(conn, A, "bob", risk_limits={"max_position_pct": None})
    assert get_strategy(conn, A).risk_limits == {}
    history = [(f, o, n, who, why) for _, f, o, n, who, why in config_history(conn, A)]
    # The database writes the events: the creation (a backtest registered it), then each field
    # of one change (in name order), with who and why.
    assert history == [
        ("created", None, {"family": "sma_cross", "fast": 10, "slow": 100}, "tradeflow", None),
        ("include_in_optimization", True, False, "alice", "paper first"),
        ("max_position_pct", None, 0.05, "alice", "paper first"),
        ("trading_mode", "SIMULATION", "PAPER", "alice", "paper first"),
        ("max_position_pct", 0.05, None, "bob", None),
    ]
    for bad, message in (
        ({"status": "PAUSED"}, "status 'PAUSED' is not one of"),
        ({"trading_mode": "YOLO"}, "trading mode 'YOLO' is not one of"),
        ({"risk_limits": {"max_position_pct": 1.5}}, r"must be a fraction in \(0, 1\]"),
        ({"risk_limits": {"max_leverage": 0.5}}, "unknown risk limit 'max_leverage'"),
    ):
        with pytest.raises(ConfigurationError, match=message):
            update_strategy(conn, A, "carol", **bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="--by"):
        update_strategy(conn, A, "", status="TESTING")
    conn.commit()
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
        conn.execute("UPDATE strategy_config_events SET actor = 'mallory'")
