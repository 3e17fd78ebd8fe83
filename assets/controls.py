"""The kill switch from the Dagster UI: halt or resume trading (the same engine functions as
`tradeflow halt` and `tradeflow resume`)."""

from typing import Literal

import dagster as dg

from engine.execution.halts import halt, resume
from orchestration.resources import Database


class TradingSwitchConfig(dg.Config):
    """Halt or resume all trading, who does it and why (both required)."""

    action: Literal["halt", "resume"]
    by: str
    reason: str


@dg.op
def switch_trading(
    context: dg.OpExecutionContext, config: TradingSwitchConfig, database: Database
) -> None:
    """While halted no order is planned or sent, at any broker."""
    with database.connect() as conn:
        switch = (halt if config.action == "halt" else resume)(conn, config.by, config.reason)
    context.log.warning(str(switch))
