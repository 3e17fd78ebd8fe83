"""A few seeded crash trials (tests/crash_trials.py runs 200 and more): SIGKILL at a random point,
re-run to completion, and the broker and our book agree, with nothing sent twice or lost."""

from tests.crash_trials import run_trials


def test_killed_executions_complete_exactly_once_and_match_the_broker() -> None:
    tally = run_trials(4, seed=7)
    assert tally.trials == 4 and tally.orders > 0 and tally.kills > 0
    assert (tally.duplicates, tally.lost, tally.mismatched) == (0, 0, 0), tally.line()
