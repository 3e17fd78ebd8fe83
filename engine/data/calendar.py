"""NYSE trading days from exchange_calendars (XNYS)."""

from __future__ import annotations

from datetime import date
from functools import cache

import exchange_calendars as xcals
import pandas as pd


@cache
def nyse() -> xcals.ExchangeCalendar:
    return xcals.get_calendar("XNYS")


def trading_days(start: date, end: date) -> list[date]:
    """NYSE sessions from ``start`` to ``end`` inclusive."""
    cal = nyse()
    first = max(pd.Timestamp(start), cal.first_session)
    last = min(pd.Timestamp(end), cal.last_session)
    if first > last:
        return []
    return [ts.date() for ts in cal.sessions_in_range(first, last)]
