"""NYSE trading days and session times from exchange_calendars (XNYS)."""

from __future__ import annotations

import json
import os
from datetime import date, datetime
from functools import cache
from importlib.metadata import version
from pathlib import Path
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


def known_weekday_holidays() -> list[date]:
    """Every weekday NYSE is closed from FIRST_SESSION to the calendar's last session (a year
    from today). Kept in the user's cache per exchange_calendars version and day: the Dagster
    definitions make their daily partitions from it in every process, and loading the calendar
    took a third of their import (bench/imports.py)."""
    today = date.today()  # exchange_calendars ends its calendars a year from today
    cache_dir = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tradeflow"
    path = cache_dir / f"nyse-holidays-{version('exchange_calendars')}-{today}.json"
    try:
        return [date.fromisoformat(d) for d in json.loads(path.read_text())]
    except (OSError, ValueError, TypeError):  # none yet, or damaged: made again
        pass
    holidays = weekday_holidays(date.fromisoformat(FIRST_SESSION), nyse().last_session.date())
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}")
        partial.write_text(json.dumps([d.isoformat() for d in holidays]))
        partial.replace(path)
    except OSError:
        pass  # a read-only home: computed again next time
    return holidays


def is_open(at: datetime) -> bool:
    """Whether NYSE is in a session at ``at`` (timezone-aware)."""
    return bool(nyse().is_open_on_minute(pd.Timestamp(at).floor("min"), ignore_breaks=True))
