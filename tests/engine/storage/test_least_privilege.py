"""The application's database role cannot forge, rewrite or erase money records (sql/0006).

Each attack a review reproduced with a superuser connection is tried here through the
application's own connection, and must be refused; the legitimate paths still work."""

from datetime import date

import psycopg
import pytest

from engine.approvals.workflow import approve
from engine.brokers.simulated import SimulatedBroker
from engine.data.read_store import latest_prices
from engine.errors import ExecutionRefusedError
from engine.execution.book_store import money_records_exposed
from engine.execution.executor import execute_allocation
from engine.storage.connection import APP_ROLE, DatabaseUrls
from engine.strategies.config import update_strategy
from tests.engine.execution.test_paper import FAST, KEY, LIMITS, SECRET, router
from tests.engine.execution.test_reconcile import simulated
from tests.fake_alpaca import serve_alpaca
from tests.helpers import pending_allocation, store_synthetic_bars

A, B = "sma_cross_10_100", "sma_cross_20_50"
DENIED = psycopg.errors.InsufficientPrivilege

MONEY_TABLES = [
    "orders",
    "order_events",
    "fills",
    "risk_decisions",
    "approval_events",
    "allocations",
    "allocation_weights",
    "strategy_config_events",
    "position_adjustments",
    "bar_versions",
    "quarantine_decisions",
    "trading_halts",
    "bar_loads",
    "sim_broker.orders",
    "sim_broker.fills",
]


@pytest.fixture
def traded(db: str, conn: psycopg.Connection) -> str:
    """An ACTIVE allocation whose orders filled at the simulated broker; its id."""
    store_synthetic_bars(conn, date(2023, 1, 1), date(2024, 6, 28), n_symbols=8)
    prices = {s: p for s, (_, p) in latest_prices(conn).items()}
    pending_allocation(conn, "a1", {A: 0.5, B: 0.5})
    approve(conn, "a1", by="alice")
    conn.commit()
    report = execute_allocation(
        db, "a1", simulated(db, SimulatedBroker(db, prices.get)), LIMITS, FAST
    )
    assert report.filled > 0
    return "a1"


def _refused(conn: psycopg.Connection, statement: str, error: type[Exception] = DENIED) -> str:
    with pytest.raises(error) as refused:
        conn.execute(statement)  # type: ignore[arg-type]
    conn.rollback()
    return str(refused.value)


def test_the_application_role_is_neither_superuser_nor_owner(
    conn: psycopg.Connection, owner_conn: psycopg.Connection
) -> None:
    assert conn.info.user == APP_ROLE
    assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    assert conn.execute(
        "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user"
    ).fetchone() == (False, False, False)
    assert money_records_exposed(conn) == []
    assert money_records_exposed(owner_conn)  # the owner's role could, so it does not trade


def test_filled_orders_cannot_be_rewritten(conn: psycopg.Connection, traded: str) -> None:
    (coid,) = conn.execute("SELECT client_order_id FROM orders WHERE status = 'FILLED'").fetchone()
    for change in ("qty = 1", "symbol = 'ABC'", "side = 'sell'", "allocation_id = NULL"):
        _refused(conn, f"UPDATE orders SET {change} WHERE client_order_id = '{coid}'")
    # The status may move, but only forward (the state machine), and never off FILLED.
    _refused(
        conn,
        f"UPDATE orders SET status = 'CANCELED' WHERE client_order_id = '{coid}'",
        psycopg.errors.CheckViolation,
    )


def test_the_active_allocations_weights_cannot_change(
    conn: psycopg.Connection, traded: str
) -> None:
    _refused(conn, "UPDATE allocation_weights SET weight = 0.9 WHERE allocation_id = 'a1'")
    _refused(conn, "DELETE FROM allocation_weights WHERE allocation_id = 'a1'")
    why = _refused(conn, f"INSERT INTO allocation_weights VALUES ('a1', '{A}', 0.2)")
    assert "weights are written only with a new allocation" in why
    _refused(conn, "UPDATE allocations SET created_at = now() WHERE allocation_id = 'a1'")
    _refused(conn, "UPDATE allocations SET created_by = 'mallory' WHERE allocation_id = 'a1'")
    _refused(conn, "DELETE FROM allocations WHERE allocation_id = 'a1'")
    weights = conn.execute(
        "SELECT strategy_id, weight FROM allocation_weights WHERE allocation_id = 'a1'"
    ).fetchall()
    assert sorted(weights) == [(A, 0.5), (B, 0.5)]


def test_a_strategy_changes_only_with_its_event(conn: psycopg.Connection, traded: str) -> None:
    why = _refused(conn, f"UPDATE strategies SET trading_mode = 'LIVE' WHERE strategy_id = '{A}'")
    assert "needs an actor" in why
    _refused(conn, f"UPDATE strategies SET params = '{{}}' WHERE strategy_id = '{A}'")
    _refused(
        conn,
        "INSERT INTO strategy_config_events (strategy_id, field, actor) "
        f"VALUES ('{A}', 'trading_mode', 'alice')",
    )
    _refused(conn, f"DELETE FROM strategies WHERE strategy_id = '{A}'")
    update_strategy(conn, A, "alice", "paper first", trading_mode="PAPER")
    conn.commit()
    events = conn.execute(
        "SELECT field, new_value, actor, reason FROM strategy_config_events "
        "WHERE strategy_id = %s AND field <> 'created'",
        (A,),
    ).fetchall()
    assert events == [("trading_mode", "PAPER", "alice", "paper first")]


def test_approval_events_and_orders_cannot_be_forged(conn: psycopg.Connection, traded: str) -> None:
    _refused(
        conn,
        "INSERT INTO approval_events (allocation_id, from_status, to_status, actor) "
        "VALUES ('a1', 'PENDING_APPROVAL', 'ACTIVE', 'mallory')",
    )
    pending_allocation(conn, "a2", {A: 1.0})
    (pending_event,) = conn.execute(
        "SELECT event_id FROM approval_events WHERE allocation_id = 'a2'"
    ).fetchone()
    (active_event,) = conn.execute(
        "SELECT event_id FROM approval_events WHERE allocation_id = 'a1' AND to_status = 'ACTIVE'"
    ).fetchone()
    order = (
        "INSERT INTO orders (client_order_id, allocation_id, approval_event_id, strategy_id, "
        "symbol, side, qty, status, broker) VALUES ('forged', '{}', {}, '{}', 'SYN01', 'buy', "
        "100, '{}', 'simulated')"
    )
    for allocation, event, status, message in (
        ("a2", pending_event, "INTENT", "did not make allocation a2 ACTIVE"),  # not approved
        ("a1", pending_event, "INTENT", "did not make allocation a1 ACTIVE"),  # another's event
        ("a1", active_event, "FILLED", "starts as INTENT"),  # a fill nobody sent
    ):
        why = _refused(conn, order.format(allocation, event, A, status))
        assert message in why
    why = _refused(conn, "UPDATE allocations SET status = 'REJECTED' WHERE allocation_id = 'a2'")
    assert "needs an actor" in why  # no decision without its event


@pytest.mark.parametrize("table", MONEY_TABLES)
def test_money_records_cannot_be_erased_or_rewritten(
    conn: psycopg.Connection, traded: str, table: str
) -> None:
    _refused(conn, f"TRUNCATE {table}")
    _refused(conn, f"DELETE FROM {table}")
    _refused(conn, f"DROP TABLE {table}")
    _refused(conn, f"ALTER TABLE {table} DISABLE TRIGGER ALL")
    assert conn.execute(
        "SELECT has_any_column_privilege(%s::regclass, 'UPDATE')", (table,)
    ).fetchone() == (table in ("allocations", "orders"),)  # their status, by a column grant


def test_the_server_itself_is_out_of_reach(conn: psycopg.Connection, traded: str) -> None:
    _refused(conn, "SET session_replication_role = replica")
    _refused(conn, "COPY orders TO PROGRAM 'cat > /tmp/tradeflow-orders'")
    _refused(conn, "COPY (SELECT 1) TO '/tmp/tradeflow-orders'")
    _refused(conn, "SELECT pg_read_file('/etc/passwd')")
    _refused(conn, "CREATE TABLE side_door (x int)")
    _refused(
        conn,
        "CREATE OR REPLACE FUNCTION reject_change() RETURNS trigger LANGUAGE plpgsql "
        "AS $$ BEGIN RETURN NEW; END $$",
    )
    _refused(conn, "ALTER ROLE tradeflow_app SUPERUSER")
    _refused(conn, "SET ROLE tradeflow_owner")


def test_every_table_has_its_grants_decided(owner_conn: psycopg.Connection) -> None:
    """A new table must be granted to the application explicitly (sql/0006 and later): read by
    all, erased only where research data is rewritten, truncated by none."""
    rows = owner_conn.execute(
        """SELECT n.nspname || '.' || c.relname, pg_get_userbyid(c.relowner),
                  has_table_privilege(%s, c.oid, 'SELECT'),
                  has_table_privilege(%s, c.oid, 'DELETE'),
                  has_table_privilege(%s, c.oid, 'TRUNCATE')
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname IN ('public', 'sim_broker') AND c.relkind IN ('r', 'p', 'v', 'm')
             AND c.relname <> 'schema_migrations'""",
        (APP_ROLE, APP_ROLE, APP_ROLE),
    ).fetchall()
    assert rows and all(select for _, _, select, _, _ in rows)
    assert {t for t, _, _, delete, _ in rows if delete} == {
        "public.bars_daily",
        "public.correlations",
        "public.signals",
    }
    assert not [t for t, _, _, _, truncate in rows if truncate]


def test_the_application_owns_nothing(conn: psycopg.Connection, backend: str) -> None:
    """What it owned (the weekly aggregate, and so its materialization table) it could put a
    trigger on, running its own function as whoever refreshed the aggregate next."""
    owned = conn.execute(
        "SELECT c.oid::regclass::text FROM pg_class c WHERE c.relowner = current_user::regrole"
    ).fetchall()
    assert owned == []
    tables = ["bars_daily", "fills"]
    if backend == "timescaledb":
        tables += conn.execute(
            """SELECT format('%I.%I', materialization_hypertable_schema,
                             materialization_hypertable_name)
               FROM timescaledb_information.continuous_aggregates"""
        ).fetchone()
    conn.execute(
        "CREATE FUNCTION pg_temp.evil() RETURNS trigger LANGUAGE plpgsql "
        "AS $$ BEGIN RETURN NULL; END $$"
    )
    conn.commit()
    for table in tables:
        _refused(
            conn,
            f"CREATE TRIGGER evil AFTER INSERT ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.evil()",
        )


def test_our_trigger_functions_cannot_be_borrowed(conn: psycopg.Connection, traded: str) -> None:
    """The SECURITY DEFINER event writers, attached to a temporary table of the application's,
    wrote forged approval and configuration events as the owner."""
    conn.execute("CREATE TEMP TABLE fake (allocation_id text, status text, created_by text)")
    _refused(
        conn,
        "CREATE TRIGGER t AFTER INSERT ON fake FOR EACH ROW "
        "EXECUTE FUNCTION public.record_approval_event()",
    )
    conn.execute("CREATE TEMP TABLE fake (strategy_id text, family text, params jsonb)")
    _refused(
        conn,
        "CREATE TRIGGER t AFTER INSERT ON fake FOR EACH ROW "
        "EXECUTE FUNCTION public.record_strategy_config_event()",
    )


def test_temporary_tables_do_not_shadow_the_checks(conn: psycopg.Connection, traded: str) -> None:
    """A temporary approval_events/allocations made a PENDING allocation look ACTIVE to the
    order check, and an ACTIVE one look new to the weights check."""
    pending_allocation(conn, "a2", {A: 1.0})
    conn.commit()
    (event,) = conn.execute(
        "SELECT event_id FROM approval_events WHERE allocation_id = 'a2'"
    ).fetchone()
    shadow = (
        "CREATE TEMP TABLE approval_events (event_id bigint, allocation_id text, to_status text);"
        f"INSERT INTO pg_temp.approval_events VALUES ({event}, 'a2', 'ACTIVE');"
        "CREATE TEMP TABLE allocations (allocation_id text, status text, created_at timestamptz);"
        "INSERT INTO pg_temp.allocations VALUES ('a2', 'ACTIVE', now()), ('a1', 'ACTIVE', now());"
    )
    why = _refused(
        conn,
        shadow + "INSERT INTO orders (client_order_id, allocation_id, approval_event_id, "
        f"strategy_id, symbol, side, qty, reference_price, status, broker) VALUES ('forged', "
        f"'a2', {event}, '{A}', 'SYN01', 'buy', 60, 100, 'INTENT', 'simulated')",
    )
    assert "did not make allocation a2 ACTIVE" in why
    why = _refused(conn, shadow + f"INSERT INTO allocation_weights VALUES ('a1', '{B}', 1.0)")
    assert "weights are written only with a new allocation" in why


def test_a_strategy_cannot_hide_a_change_or_start_live(
    conn: psycopg.Connection, traded: str
) -> None:
    """A risk limit named like a column hid a switch to LIVE from the configuration events."""
    as_mallory = "SELECT set_config('tradeflow.actor', 'mallory', true);"
    for limits in ('risk_limits || \'{"trading_mode": "SIMULATION"}\'', "'[]'"):
        _refused(
            conn,
            as_mallory + f"UPDATE strategies SET risk_limits = {limits} WHERE strategy_id = '{B}'",
            psycopg.errors.CheckViolation,
        )
    _refused(
        conn,
        as_mallory + "INSERT INTO strategies (strategy_id, family, params, trading_mode, account) "
        "VALUES ('born_live', 'sma_cross', '{}', 'LIVE', 'live-main')",
    )


def _open_order(conn: psycopg.Connection, status: str) -> str:
    """A planned order of the ACTIVE allocation a1 at the simulated broker, moved to ``status``
    (no broker id yet)."""
    (event,) = conn.execute(
        "SELECT event_id FROM approval_events WHERE allocation_id = 'a1' AND to_status = 'ACTIVE'"
    ).fetchone()
    conn.execute(
        "INSERT INTO orders (client_order_id, allocation_id, approval_event_id, strategy_id, "
        "symbol, side, qty, reference_price, status, broker, session) VALUES "
        f"('open-1', 'a1', {event}, '{A}', 'SYN01', 'buy', 10, 100, 'INTENT', 'simulated', "
        "'2024-06-28')"
    )
    conn.execute("UPDATE orders SET status = %s WHERE client_order_id = 'open-1'", (status,))
    return "open-1"


def test_an_open_order_cannot_be_made_not_sent(conn: psycopg.Connection, traded: str) -> None:
    """NOT_SENT counts in the book as filled and leaves the broker's working set."""
    coid = _open_order(conn, "SUBMITTED")
    why = _refused(
        conn,
        f"UPDATE orders SET status = 'NOT_SENT' WHERE client_order_id = '{coid}'",
        psycopg.errors.CheckViolation,
    )
    assert "SUBMITTED -> NOT_SENT is not allowed" in why
    (event,) = conn.execute(
        "SELECT event_id FROM approval_events WHERE allocation_id = 'a1' AND to_status = 'ACTIVE'"
    ).fetchone()
    why = _refused(
        conn,
        "INSERT INTO orders (client_order_id, allocation_id, approval_event_id, strategy_id, "
        f"symbol, side, qty, status, broker) VALUES ('phantom', 'a1', {event}, '{A}', 'SYN04', "
        "'buy', 5000, 'NOT_SENT', 'alpaca-live')",
    )
    assert "NOT_SENT is for validation alone" in why


def test_fills_match_their_order(conn: psycopg.Connection, traded: str) -> None:
    """A fill on an order the broker never answered for, on another symbol or side, or beyond
    the order's quantity moved positions; two orders could claim one broker id."""
    filled, symbol, side, broker_id = conn.execute(
        "SELECT client_order_id, symbol, side, broker_order_id FROM orders "
        "WHERE status = 'FILLED' LIMIT 1"
    ).fetchone()
    fill = "INSERT INTO fills VALUES ('f-x', '{}', '{}', '{}', 1, 10, 0, now())"
    other_side = "sell" if side == "buy" else "buy"
    for order, fill_symbol, fill_side in (
        (filled, symbol, side),  # beyond its quantity: it is filled
        (filled, "ZZZ", side),
        (filled, symbol, other_side),
        ("open-1", "SYN01", "buy"),  # sent, but no broker has answered for it
    ):
        if order == "open-1":
            _open_order(conn, "SUBMITTED")
        why = _refused(
            conn, fill.format(order, fill_symbol, fill_side), psycopg.errors.CheckViolation
        )
        assert "fills beyond its quantity" in why
    coid = _open_order(conn, "SUBMITTED")
    _refused(
        conn,
        f"UPDATE orders SET broker_order_id = '{broker_id}' WHERE client_order_id = '{coid}'",
        psycopg.errors.UniqueViolation,
    )


def test_orders_go_to_alpaca_only_through_the_applications_role(
    db: str, database_urls: DatabaseUrls, conn: psycopg.Connection
) -> None:
    """One URL for everything (the owner's, or a superuser's) is refused before Alpaca hears of
    it: such a role could erase what the orders leave behind."""
    store_synthetic_bars(conn, date(2023, 1, 1), date(2024, 6, 28), n_symbols=8)
    prices = {s: p for s, (_, p) in latest_prices(conn).items()}
    pending_allocation(conn, "a1", {A: 0.5, B: 0.5})
    for sid in (A, B):
        update_strategy(conn, sid, "alice", trading_mode="PAPER")
    approve(conn, "a1", by="alice")
    conn.commit()
    with serve_alpaca(KEY, SECRET, cash=100_000.0, prices=prices) as fake:
        owner = database_urls.owner
        with pytest.raises(ExecutionRefusedError, match="cannot rewrite or erase money records"):
            execute_allocation(owner, "a1", router(owner, fake, prices), LIMITS, FAST)
        assert fake.requests == []
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (0,)
