"""The pieces of the research fan-out that need no database: shares and one panel."""

from datetime import date

import pytest

from assets.backtests import Swept, one_panel
from engine.errors import TradeflowError
from orchestration.fan_out import shard_of


@pytest.mark.parametrize("items", [0, 1, 2, 7, 9, 10])
@pytest.mark.parametrize("shards", [1, 2, 3, 4])
def test_shards_are_contiguous_nearly_equal_and_cover_everything_once(
    items: int, shards: int
) -> None:
    everything = list(range(items))
    parts = [shard_of(everything, shards, i) for i in range(shards)]
    assert [x for part in parts for x in part] == everything
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_shards_that_read_different_panels_are_refused() -> None:
    one = Swept(None, date(2024, 1, 2), date(2024, 6, 28), ["A", "B"])
    assert one_panel([one, Swept(None, one.start, one.end, ["A", "B"])]) is one
    later = Swept(None, one.start, date(2024, 7, 1), ["A", "B"])
    more = Swept(None, one.start, one.end, ["A", "B", "C"])
    for other in (later, more):
        with pytest.raises(TradeflowError, match="bars were stored while they ran; run it again"):
            one_panel([one, other])
