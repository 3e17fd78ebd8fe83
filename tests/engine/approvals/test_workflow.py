"""Expiry, custom allocations and re-optimization marks, on the test database."""

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from engine.approvals.custom import read_weights
from engine.approvals.store import reoptimization_requests, request_reoptimization
from engine.approvals.workflow import (
    EXPIRY_ACTOR,
    active_allocation,
    approve,
    create_custom,
    expire_due,
    get_allocation,
    weight_diff,
)
from engine.errors import IllegalTransitionError, SourceDataError
from engine.portfolio.constraints import AllocationConstraints
from engine.strategies.config import update_strategy
from tests.helpers import pending_allocation

A, B, C = "sma_cross_10_100", "sma_cross_20_150", "sma_cross_50_200"
WEIGHTS = {A: 0.5, B: 0.5}


def _state(conn: psycopg.Connection) -> tuple:
    return (
        conn.execute("SELECT allocation_id, status FROM allocations ORDER BY 1").fetchall(),
        conn.execute("SELECT count(*) FROM approval_events").fetchone(),
        conn.execute("SELECT count(*) FROM allocation_weights").fetchone(),
    )


def test_an_expired_allocation_cannot_be_approved(conn: psycopg.Connection) -> None:
    pending_allocation(conn, "old", WEIGHTS, expires_at=datetime.now(UTC) - timedelta(minutes=1))
    pending_allocation(conn, "fresh", WEIGHTS, expires_at=datetime.now(UTC) + timedelta(hours=1))
    with pytest.raises(IllegalTransitionError, match="old is EXPIRED; only a PENDING_APPROVAL"):
        approve(conn, "old", by="alice")
    conn.rollback()
    assert get_allocation(conn, "old").status == "EXPIRED"
    assert get_allocation(conn, "fresh").status == "PENDING_APPROVAL"
    (event,) = conn.execute(
        "SELECT from_status, to_status, actor FROM approval_events "
        "WHERE allocation_id = 'old' AND to_status = 'EXPIRED'"
    ).fetchall()
    assert event == ("PENDING_APPROVAL", "EXPIRED", EXPIRY_ACTOR)
    assert expire_due(conn) == []  # nothing twice
    approve(conn, "fresh", by="alice")
    assert get_allocation(conn, "fresh").status == "ACTIVE"


def test_expiry_at_a_given_moment_takes_only_what_is_due(conn: psycopg.Connection) -> None:
    now = datetime.now(UTC)
    pending_allocation(conn, "a1", WEIGHTS, expires_at=now + timedelta(hours=1))
    pending_allocation(conn, "a2", WEIGHTS, expires_at=now + timedelta(hours=3))
    pending_allocation(conn, "no_expiry", WEIGHTS)
    expired = expire_due(conn, now=now + timedelta(hours=2))
    assert [t.allocation_id for t in expired] == ["a1"]
    assert [get_allocation(conn, a).status for a in ("a1", "a2", "no_expiry")] == [
        "EXPIRED",
        "PENDING_APPROVAL",
        "PENDING_APPROVAL",
    ]


def test_a_custom_allocation_enters_active_and_archives_the_previous(
    conn: psycopg.Connection,
) -> None:
    pending_allocation(conn, "opt", WEIGHTS)
    pending_allocation(conn, "other", {C: 0.5, A: 0.5})
    approve(conn, "opt", by="alice")
    t = create_custom(conn, {A: 0.3, C: 0.5}, "bob", "less in B", AllocationConstraints())
    assert t.archived == "opt" and t.to_status == "ACTIVE"
    custom = get_allocation(conn, t.allocation_id)
    assert (custom.status, custom.method, custom.created_by) == ("ACTIVE", "custom", "bob")
    assert custom.weights == {A: 0.3, C: 0.5}
    assert get_allocation(conn, "opt").status == "ARCHIVED"
    events = conn.execute(
        "SELECT from_status, to_status, actor, reason FROM approval_events "
        "WHERE allocation_id = %s",
        (t.allocation_id,),
    ).fetchall()
    assert events == [(None, "ACTIVE", "bob", "less in B")]
    assert active_allocation(conn).allocation_id == t.allocation_id  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({A: 0.6, B: 0.4}, f"weight of {A} is 0.6000, above the cap of 0.5000"),
        ({A: -0.1, B: 0.5}, "long-only"),
        ({A: 0.5, B: 0.5, C: -5e-7}, f"weight of {C} is -5e-07; allocations are long-only"),
        ({A: float("nan"), B: 0.5}, "not a number"),
        ({A: 0.5, "sma_cross_5_500": 0.5}, "unknown strategy 'sma_cross_5_500'"),
        ({A: 0.5, C: 0.5}, f"strategy {C} is INACTIVE, not ACTIVE"),
        ({}, "at least one weight"),
    ],
)
def test_custom_weights_breaking_a_rule_are_refused_and_change_nothing(
    conn: psycopg.Connection, weights: dict, message: str
) -> None:
    pending_allocation(conn, "opt", {A: 0.5, B: 0.25, C: 0.25})
    approve(conn, "opt", by="alice")
    update_strategy(conn, C, "alice", status="INACTIVE")
    before = _state(conn)
    with pytest.raises(IllegalTransitionError, match=message):
        create_custom(conn, weights, "bob", "my view", AllocationConstraints())
    conn.rollback()
    assert _state(conn) == before


def test_a_custom_allocation_needs_an_author_and_a_reason(conn: psycopg.Connection) -> None:
    pending_allocation(conn, "opt", WEIGHTS)
    with pytest.raises(IllegalTransitionError, match="--by"):
        create_custom(conn, WEIGHTS, " ", "why", AllocationConstraints())
    with pytest.raises(IllegalTransitionError, match="--reason"):
        create_custom(conn, WEIGHTS, "bob", "", AllocationConstraints())


def test_weights_are_read_from_csv_and_json_with_errors_naming_the_line(tmp_path: Path) -> None:
    good_csv = tmp_path / "w.csv"
    good_csv.write_text(f"strategy_id,weight\n{A},0.4\n{B},0.6\n")
    assert read_weights(good_csv) == {A: 0.4, B: 0.6}
    good_json = tmp_path / "w.json"
    good_json.write_text(json.dumps({"weights": {A: 0.4, B: 0.6}}))
    assert read_weights(good_json) == {A: 0.4, B: 0.6}
    bad = tmp_path / "bad.csv"
    bad.write_text(f"strategy_id,weight\n{A},0.4\n{B},lots\n")
    with pytest.raises(SourceDataError, match=r"bad.csv line 3: weight 'lots' is not a number"):
        read_weights(bad)
    twice = tmp_path / "twice.csv"
    twice.write_text(f"strategy_id,weight\n{A},0.4\n{A},0.6\n")
    with pytest.raises(SourceDataError, match=f"line 3: {A} appears twice"):
        read_weights(twice)
    header = tmp_path / "header.csv"
    header.write_text(f"name,w\n{A},1\n")
    with pytest.raises(SourceDataError, match="header must name strategy_id and weight"):
        read_weights(header)
    broken = tmp_path / "broken.json"
    broken.write_text('{"weights": {')
    with pytest.raises(SourceDataError, match="broken.json: not valid JSON"):
        read_weights(broken)
    inf = tmp_path / "inf.json"
    inf.write_text(json.dumps({A: "inf"}))
    with pytest.raises(SourceDataError, match=f"inf.json: {A}: weight 'inf' is not a finite"):
        read_weights(inf)


def test_the_diff_against_the_active_allocation(conn: psycopg.Connection) -> None:
    pending_allocation(conn, "old", {A: 0.5, B: 0.5})
    pending_allocation(conn, "new", {A: 0.2, C: 0.5, B: 0.0})
    approve(conn, "old", by="alice")
    diff = weight_diff(get_allocation(conn, "new"), active_allocation(conn))
    assert diff == [
        (A, 0.5, 0.2, pytest.approx(-0.3)),
        (B, 0.5, 0.0, -0.5),
        (C, 0.0, 0.5, 0.5),
    ]


def test_the_active_allocation_is_marked_for_reoptimization_once(
    conn: psycopg.Connection,
) -> None:
    assert request_reoptimization(conn, "shift") is None  # nothing ACTIVE
    pending_allocation(conn, "a", WEIGHTS)
    approve(conn, "a", by="alice")
    assert request_reoptimization(conn, "asset 63-day shift 0.2") == "a"
    assert request_reoptimization(conn, "again") is None
    conn.commit()
    ((allocation_id, _, reason),) = reoptimization_requests(conn)
    assert (allocation_id, reason) == ("a", "asset 63-day shift 0.2")
    assert get_allocation(conn, "a").status == "ACTIVE"
