"""The kill switch from the Dagster UI: halt or resume trading (the same engine functions as
`tradeflow halt` and `tradeflow resume`)."""

from typing import Literal

import dagster as dg

from engine.execution.flatten import flatten
from engine.execution.halts import halt, resume
from orchestration.resources import BrokerConfig, Database


class TradingSwitchConfig(dg.Config):
    """Halt or resume all trading, who does it and why (both required)."""

    action: Literal["halt", "resume"]
    by: str
    reason: str
    flatten: bool = False  # with halt: cancel open orders and close every position


@dg.op
def switch_trading(
    context: dg.OpExecutionContext,
    config: TradingSwitchConfig,
    database: Database,
    broker: BrokerConfig,
) -> None:
    """While halted no order is planned or sent, at any broker."""
    if config.action == "halt" and config.flatten:
        report = flatten(
            database.database_url(),
            broker.router(database),
            config.by,
            config.reason,
            broker.execution(),
        )
        context.log.warning(
            f"{report.switch}: {report.canceled} orders canceled, {len(report.sent)} closing "
            f"orders sent, {len(report.left)} positions still held"
        )
        return
    with database.connect() as conn:
        switch = (halt if config.action == "halt" else resume)(conn, config.by, config.reason)
    context.log.warning(str(switch))
