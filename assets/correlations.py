"""Rolling correlations of strategy, asset and sector returns, with the regime-shift measure."""

import dagster as dg

from assets.validations import validations
from engine.approvals.reoptimization import refresh_correlations
from engine.markdown import markdown_image, markdown_table
from engine.plots import heatmap_png
from engine.portfolio.correlation import duplicates_markdown, near_duplicates, to_markdown
from orchestration.resources import Database, Settings

MAX_HEATMAP_SERIES = 60
# Near-duplicate pairs (and groups) logged one by one; all are counted, the strongest pairs shown.
MAX_LOGGED_PAIRS = 50


@dg.asset(deps=[validations], group_name="portfolio")
def correlations(
    context: dg.AssetExecutionContext, database: Database, settings: Settings
) -> dg.MaterializeResult:
    """Correlation matrices over the last 63 and 252 trading days of the strategies eligible for
    allocation, of every symbol and of every sector; each with its shift from the previous one;
    near-duplicate strategies flagged."""
    with database.connect() as conn:
        report = refresh_correlations(
            conn, settings.regime_shift_threshold, tuple(settings.correlation_windows)
        )
    for what, why in report.skipped.items():
        context.log.info(f"no {what} correlations: {why}")
    if report.flagged_allocation:
        context.log.warning(
            f"regime shift: {report.flagged_allocation} marked for re-optimization "
            f"({report.reason})"
        )
    metadata: dict[str, dg.RawMetadataValue] = {
        "regime_shift_threshold": dg.MetadataValue.float(settings.regime_shift_threshold),
        "shifts": dg.MetadataValue.md(
            markdown_table(
                ["kind", "window", "as of", "series", "previous", "shift", "days stored"],
                [
                    (
                        m.matrix.kind,
                        m.matrix.window,
                        m.as_of,
                        len(m.matrix.matrix),
                        m.previous_as_of or "-",
                        "-" if m.shift is None else f"{m.shift:.3f}",
                        m.days,
                    )
                    for m in report.matrices
                ],
            )
        ),
        "skipped": dg.MetadataValue.json(report.skipped),
        "reoptimization_requested_for": report.flagged_allocation or "",
    }
    # Near-duplicates: in the latest strategy matrix of the longest window, at the threshold the
    # allocation caps them with.
    longest = max(settings.correlation_windows)
    threshold = settings.constraints().duplicate_threshold
    strategies = report.latest("strategy", longest)
    if strategies is None:
        note = f"not checked: no {longest}-day strategy matrix in this refresh"
        context.log.info(f"near-duplicate strategies {note}")
        metadata["near_duplicates"] = dg.MetadataValue.md(note)
    else:
        duplicates = near_duplicates(strategies, threshold)
        context.log.info(
            f"{len(duplicates.pairs)} near-duplicate strategy pairs (|rho| > {threshold}, "
            f"{longest} days to {duplicates.as_of}) in {len(duplicates.groups)} groups"
        )
        for a, b, rho in duplicates.pairs[:MAX_LOGGED_PAIRS]:
            context.log.info(f"near-duplicates: {a} and {b}, rho {rho:.4f}")
        for group in duplicates.groups[:MAX_LOGGED_PAIRS]:
            context.log.info(f"near-duplicate group of {len(group)}: {', '.join(group)}")
        metadata["near_duplicate_pairs"] = dg.MetadataValue.int(len(duplicates.pairs))
        metadata["near_duplicates"] = dg.MetadataValue.md(duplicates_markdown(duplicates))
    shortest = min(settings.correlation_windows)
    for m in report.matrices:
        if m.matrix.window != shortest:
            continue
        table = to_markdown(m.matrix.matrix)
        title = f"{m.matrix.kind} correlations, {m.matrix.window} days to {m.as_of}"
        if len(m.matrix.matrix) > MAX_HEATMAP_SERIES:
            # Hundreds of symbols make an unreadable picture of a megabyte or more, stored with
            # every refresh: the table of extreme pairs says more.
            metadata[f"{m.matrix.kind}_matrix"] = dg.MetadataValue.md(f"{title}\n\n{table}")
            continue
        picture = markdown_image(heatmap_png(m.matrix.matrix, title), title)
        metadata[f"{m.matrix.kind}_matrix"] = dg.MetadataValue.md(f"{picture}\n\n{table}")
    return dg.MaterializeResult(metadata=metadata)
