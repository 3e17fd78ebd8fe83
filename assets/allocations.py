"""The recommended allocation, stored as PENDING_APPROVAL for a person to decide on."""

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import dagster as dg

from assets.correlations import correlations
from assets.validations import validations
from engine.approvals.report import RECENT_ALLOCATIONS, statuses_markdown
from engine.approvals.workflow import list_allocations, record_recommendation
from engine.backtest.store import latest_backtest_run, load_strategy_returns
from engine.errors import AllocationError
from engine.markdown import markdown_table
from engine.portfolio.correlation import NearDuplicates, latest_near_duplicates
from engine.portfolio.store import record_failed_optimization
from engine.validation.store import eligible_strategies
from orchestration.resources import Database, Settings

if TYPE_CHECKING:
    from engine.portfolio.optimize import AllocationResult


@dg.asset(deps=[validations, correlations], group_name="portfolio")
def allocation_recommendation(
    context: dg.AssetExecutionContext, database: Database, settings: Settings
) -> dg.MaterializeResult:
    """Weights across the validated ACTIVE strategies that are in optimization, by the configured
    method (falling back to a shrunk covariance, then HRP), near-duplicates capped together,
    waiting for approval."""
    from engine.portfolio.optimize import Recommendation, optimize  # PyPortfolioOpt, cvxpy

    constraints = settings.constraints()
    method = settings.allocation_method
    longest = max(settings.correlation_windows)
    with database.connect() as conn:
        run_id, data_start, data_end = latest_backtest_run(conn)
        eligible, excluded = eligible_strategies(conn, run_id)
        for sid, why in excluded.items():
            context.log.info(f"excluded from optimization: {sid}: {why}")
        try:
            if not eligible:
                raise AllocationError("no strategy is eligible for allocation (see the log)")
            returns = load_strategy_returns(conn, run_id, eligible)
            # The same matrix the correlations asset flags them in: the latest of the longest
            # window, over the eligible strategies of this backtest run.
            duplicates = latest_near_duplicates(returns, longest, constraints.duplicate_threshold)
            if duplicates is None:
                context.log.info(f"near-duplicates not checked: no {longest}-day strategy matrix")
            groups = duplicates.groups if duplicates else ()
            result = optimize(returns, method, constraints, groups)
        except AllocationError as e:
            conn.rollback()
            record_failed_optimization(
                conn,
                run_id,
                data_start,
                data_end,
                method,
                constraints,
                str(e),
                excluded,
                len(eligible),
            )
            conn.commit()
            raise dg.Failure(description=f"no allocation recommended: {e}") from e
        for attempt in result.path:
            if attempt.error:
                context.log.warning(
                    f"{attempt.method} on the {attempt.covariance} covariance failed: "
                    f"{attempt.error}"
                )
        for sid, why in result.excluded.items():
            context.log.info(f"excluded by the optimizer: {sid}: {why}")
        if result.cap_reason:
            context.log.warning(result.cap_reason)
        expires_at = datetime.now(UTC) + timedelta(hours=settings.pending_expiry_hours)
        recommendation = Recommendation(run_id, data_start, data_end, constraints, result, excluded)
        allocation_id = record_recommendation(conn, recommendation, expires_at)
        statuses = statuses_markdown(list_allocations(conn, RECENT_ALLOCATIONS))
    weights = {sid: w for sid, w in result.weights.items() if w > 0}
    return dg.MaterializeResult(
        metadata={
            "allocation_id": allocation_id,
            # What it was recommended as: the decisions on it are observations of this asset
            # (assets/approvals.py), each with the status they left it in.
            "status_when_recommended": "PENDING_APPROVAL",
            "expires_at": f"{expires_at:%Y-%m-%d %H:%M} UTC",
            "method": result.method,
            "requested_method": result.requested,
            "path": dg.MetadataValue.json([a.as_dict() for a in result.path]),
            "excluded": dg.MetadataValue.json({**excluded, **result.excluded}),
            "backtest_run_id": str(run_id),
            "data_range": f"{data_start} .. {data_end}",
            "constraints": dg.MetadataValue.json(constraints.as_dict()),
            "expected_return": dg.MetadataValue.float(result.expected_return),
            "volatility": dg.MetadataValue.float(result.volatility),
            "sharpe": dg.MetadataValue.float(result.sharpe),
            "weights": dg.MetadataValue.md(
                markdown_table(
                    ["strategy", "weight"], [(s, f"{w:.2%}") for s, w in weights.items()]
                )
            ),
            "near_duplicate_groups": dg.MetadataValue.md(
                _groups_markdown(result, duplicates, longest, constraints.duplicate_threshold)
            ),
            "duplicate_cap_reason": result.cap_reason or "",
            "allocations": dg.MetadataValue.md(statuses),
            "approve_with": f"tradeflow approve {allocation_id} --by YOUR_NAME",
        }
    )


def _groups_markdown(
    result: "AllocationResult", duplicates: NearDuplicates | None, window: int, threshold: float
) -> str:
    """Each group of near-duplicates with its combined weight and cap, and why a cap was raised."""
    if duplicates is None:
        return f"not checked: no {window}-day strategy matrix"
    where = f"|rho| > {threshold} over the {window} days to {duplicates.as_of}"
    if not result.duplicate_groups:
        return f"no near-duplicates among the strategies allocated to ({where})"
    table = markdown_table(
        ["strategies", "members", "combined weight", "cap"],
        [
            (len(g.strategies), ", ".join(g.strategies), f"{g.weight:.2%}", f"{g.cap:.2%}")
            for g in result.duplicate_groups
        ],
    )
    reason = f"\n\n{result.cap_reason}" if result.cap_reason else ""
    return f"{where}\n\n{table}{reason}"
