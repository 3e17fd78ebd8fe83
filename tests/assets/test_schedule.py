from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from assets.market_data import DAILY
from orchestration.schedules import daily_research

NY = ZoneInfo("America/New_York")


def _evaluate(when: datetime) -> dg.RunRequest | dg.SkipReason:
    return daily_research(dg.build_schedule_context(scheduled_execution_time=when))


def test_a_trading_day_runs_its_own_partition_after_the_close() -> None:
    request = _evaluate(datetime(2024, 3, 14, 16, 30, tzinfo=NY))
    assert isinstance(request, dg.RunRequest)
    assert request.partition_key == "2024-03-14" and request.run_key == "research-2024-03-14"


@pytest.mark.parametrize(
    ("day", "why"),
    [
        (datetime(2024, 12, 25, 16, 30, tzinfo=NY), "not an NYSE trading day"),  # Christmas
        (datetime(2025, 1, 9, 16, 30, tzinfo=NY), "not an NYSE trading day"),  # day of mourning
        (datetime(2024, 3, 14, 15, 0, tzinfo=NY), "too early"),
    ],
)
def test_holidays_and_open_markets_are_skipped(day: datetime, why: str) -> None:
    skip = _evaluate(day)
    assert isinstance(skip, dg.SkipReason) and why in (skip.skip_message or "")


def test_an_early_close_day_still_runs() -> None:
    request = _evaluate(datetime(2024, 11, 29, 16, 30, tzinfo=NY))  # closes at 13:00
    assert isinstance(request, dg.RunRequest) and request.partition_key == "2024-11-29"


def test_partitions_are_trading_days_only() -> None:
    keys = DAILY.get_partition_keys_in_range(dg.PartitionKeyRange("2024-12-20", "2025-01-10"))
    assert keys == [
        "2024-12-20",
        "2024-12-23",
        "2024-12-24",
        "2024-12-26",
        "2024-12-27",
        "2024-12-30",
        "2024-12-31",
        "2025-01-02",
        "2025-01-03",
        "2025-01-06",
        "2025-01-07",
        "2025-01-08",
        "2025-01-10",
    ]
    assert DAILY.get_first_partition_key() == "2000-01-03"  # the first NYSE session of 2000
