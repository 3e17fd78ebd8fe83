"""NYSE trading days and session times from exchange_calendars (XNYS)."""

from __future__ import annotations

from datetime import date, datetime
from functools import cache
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    import exchange_calendars as xcals

FIRST_SESSION = "2000-01-01"  # exchange_calendars stops 20 years back unless told


@cache
def nyse() -> xcals.ExchangeCalendar:
    import exchange_calendars as xcals  # 1-2 s: loaded on the first question, not on import

    return xcals.get_calendar("XNYS", start=FIRST_SESSION)


def trading_days(start: date, end: date) -> list[date]:
    """NYSE sessions from ``start`` to ``end`` inclusive."""
    cal = nyse()
    first = max(pd.Timestamp(start), cal.first_session)
    last = min(pd.Timestamp(end), cal.last_session)
    if first > last:
        return []
    return [ts.date() for ts in cal.sessions_in_range(first, last)]


def is_trading_day(day: date) -> bool:
    return bool(nyse().is_session(pd.Timestamp(day)))


def session_open(day: date) -> datetime:
    """The session's open in UTC."""
    return nyse().session_open(pd.Timestamp(day)).to_pydatetime()


def session_close(day: date) -> datetime:
    """The session's close in UTC (13:00 New York on early-close days)."""
    return nyse().session_close(pd.Timestamp(day)).to_pydatetime()


def weekday_holidays(start: date, end: date) -> list[date]:
    """Weekdays in [start, end] on which NYSE is closed, as far as the calendar knows."""
    sessions = set(trading_days(start, end))
    last_known = nyse().last_session.date()
    weekdays = pd.bdate_range(start, min(end, last_known))
    return [d.date() for d in weekdays if d.date() not in sessions]


def is_open(at: datetime) -> bool:
    """Whether NYSE is in a session at ``at`` (timezone-aware)."""
    return bool(nyse().is_open_on_minute(pd.Timestamp(at).floor("min"), ignore_breaks=True))
