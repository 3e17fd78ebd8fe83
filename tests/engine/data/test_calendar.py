"""The NYSE holidays the daily partitions are made from, kept in the user's cache."""

import json
from datetime import date
from pathlib import Path

import pytest

from engine.data.calendar import FIRST_SESSION, known_weekday_holidays, nyse, weekday_holidays


def test_the_cached_holidays_are_the_calendars_and_are_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    computed = weekday_holidays(date.fromisoformat(FIRST_SESSION), nyse().last_session.date())
    assert known_weekday_holidays() == computed
    assert date(2001, 9, 11) in computed and date(2024, 12, 25) in computed
    (cached,) = (tmp_path / "tradeflow").iterdir()
    assert json.loads(cached.read_text()) == [d.isoformat() for d in computed]
    cached.write_text(json.dumps(["2001-09-11"]))  # what is read is the file
    assert known_weekday_holidays() == [date(2001, 9, 11)]
    cached.write_text("{not json")  # a damaged file: computed again, and rewritten
    assert known_weekday_holidays() == computed
    assert json.loads(cached.read_text()) == [d.isoformat() for d in computed]
