import threading

import psycopg
import pytest

from engine.approvals.workflow import approve, get_allocation, reject
from engine.errors import IllegalTransitionError, NotFoundError
from tests.helpers import pending_allocation

WEIGHTS = {"sma_cross_10_100": 0.5, "sma_cross_20_150": 0.5}


def _events(conn: psycopg.Connection, allocation_id: str) -> list[tuple]:
    return conn.execute(
        "SELECT from_status, to_status, actor, reason FROM approval_events "
        "WHERE allocation_id = %s ORDER BY event_id",
        (allocation_id,),
    ).fetchall()


def test_approve_activates_and_archives_the_previous_active(conn: psycopg.Connection) -> None:
    first = pending_allocation(conn, "a1", WEIGHTS)
    second = pending_allocation(conn, "a2", WEIGHTS)
    approve(conn, first, by="alice", reason="looks fine")
    transition = approve(conn, second, by="bob")
    conn.commit()
    assert transition.archived == "a1"
    assert get_allocation(conn, "a1").status == "ARCHIVED"
    assert get_allocation(conn, "a2").status == "ACTIVE"
    assert _events(conn, "a1") == [
        (None, "PENDING_APPROVAL", "optimizer", None),
        ("PENDING_APPROVAL", "ACTIVE", "alice", "looks fine"),
        ("ACTIVE", "ARCHIVED", "bob", "superseded by a2"),
    ]


@pytest.mark.parametrize("second", ["approve", "reject"])
def test_illegal_transitions_fail_clearly_and_change_nothing(
    conn: psycopg.Connection, second: str
) -> None:
    pending_allocation(conn, "a1", WEIGHTS)
    approve(conn, "a1", by="alice")
    conn.commit()
    before = _events(conn, "a1")
    with pytest.raises(IllegalTransitionError, match="a1 is ACTIVE; only a PENDING_APPROVAL"):
        if second == "approve":
            approve(conn, "a1", by="bob")
        else:
            reject(conn, "a1", by="bob", reason="too late")
    conn.rollback()
    assert get_allocation(conn, "a1").status == "ACTIVE"
    assert _events(conn, "a1") == before


def test_a_rejected_allocation_cannot_be_approved(conn: psycopg.Connection) -> None:
    pending_allocation(conn, "a1", WEIGHTS)
    reject(conn, "a1", by="carol", reason="too concentrated")
    conn.commit()
    with pytest.raises(IllegalTransitionError, match="a1 is REJECTED"):
        approve(conn, "a1", by="dave")
    conn.rollback()
    assert get_allocation(conn, "a1").status == "REJECTED"


def test_decisions_need_a_name_and_a_rejection_needs_a_reason(conn: psycopg.Connection) -> None:
    pending_allocation(conn, "a1", WEIGHTS)
    with pytest.raises(IllegalTransitionError, match="--by"):
        approve(conn, "a1", by="  ")
    with pytest.raises(IllegalTransitionError, match="--reason"):
        reject(conn, "a1", by="carol", reason="")
    with pytest.raises(NotFoundError, match="'nope' does not exist"):
        approve(conn, "nope", by="carol")
    conn.rollback()
    assert get_allocation(conn, "a1").status == "PENDING_APPROVAL"


def test_the_database_refuses_to_edit_or_delete_approval_events(conn: psycopg.Connection) -> None:
    pending_allocation(conn, "a1", WEIGHTS)
    for statement in (
        "UPDATE approval_events SET actor = 'mallory'",
        "DELETE FROM approval_events",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
            conn.execute(statement)
        conn.rollback()
    assert len(_events(conn, "a1")) == 1


def test_the_database_refuses_an_illegal_allocation_status_change(conn: psycopg.Connection) -> None:
    pending_allocation(conn, "a1", WEIGHTS)
    reject(conn, "a1", by="carol", reason="no")
    conn.commit()
    with pytest.raises(psycopg.errors.CheckViolation, match="REJECTED -> ACTIVE is not allowed"):
        conn.execute("UPDATE allocations SET status = 'ACTIVE' WHERE allocation_id = 'a1'")
    conn.rollback()


def test_two_simultaneous_approvals_exactly_one_succeeds(db: str) -> None:
    with psycopg.connect(db) as setup:
        pending_allocation(setup, "a1", WEIGHTS)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def attempt(name: str) -> None:
        with psycopg.connect(db) as conn:
            barrier.wait()
            try:
                approve(conn, "a1", by=name)
                conn.commit()
                outcomes.append("approved")
            except IllegalTransitionError:
                outcomes.append("refused")

    threads = [threading.Thread(target=attempt, args=(n,)) for n in ("alice", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(outcomes) == ["approved", "refused"]
    with psycopg.connect(db) as conn:
        assert [e[1] for e in _events(conn, "a1")] == ["PENDING_APPROVAL", "ACTIVE"]
