"""A rollout's pre-period from the join's segment aggregates: the canary's interval of
users and stable's, summed over the windows before the rollout began; pro rata where an
interval cuts a segment; after the holdout; nothing without data."""

from __future__ import annotations

from feedrank.core.arms import POSITION_SEGMENTS, position_segment, user_position
from feedrank.deploy.analysis import ArmTotals
from feedrank.deploy.pre_period import SegmentBook, SegmentPrePeriod
from feedrank.deploy.state import Rollout
from feedrank.v1 import events_pb2

WINDOW_MS = 300_000
HOUR_MS = 3_600_000
ROLLOUT = Rollout()


def segment(
    index: int, start_ms: int, impressions: int, engagements: int
) -> events_pb2.SegmentAggregate:
    return events_pb2.SegmentAggregate(
        window_start_ms=start_ms,
        window_end_ms=start_ms + WINDOW_MS,
        segment=index,
        segments=10,
        impressions=impressions,
        prompt_engagements=engagements,
        prompt_reports=1,
    )


def filled_book() -> SegmentBook:
    """Ten segments, each 1,000 impressions a window for two windows; segment 0's users
    engage twice as often (100) as the others' (50)."""
    book = SegmentBook(keep_ms=48 * HOUR_MS)
    for start_ms in (0, WINDOW_MS):
        for index in range(10):
            book.add(segment(index, start_ms, 1_000, 100 if index == 0 else 50))
    return book


def test_the_canary_and_stable_intervals_sum_their_segments() -> None:
    pre_period = SegmentPrePeriod(filled_book(), pre_period_ms=HOUR_MS, holdout_share=0.0)
    before = pre_period.before(ROLLOUT, 0.1, until_ms=2 * WINDOW_MS)
    assert before == (
        ArmTotals(2_000, 200, 2, 0, 0),
        ArmTotals(18_000, 900, 18, 0, 0),
    )


def test_a_cut_segment_counts_pro_rata_and_the_holdout_is_left_out() -> None:
    pre_period = SegmentPrePeriod(filled_book(), pre_period_ms=HOUR_MS, holdout_share=0.1)
    before = pre_period.before(ROLLOUT, 0.05, until_ms=2 * WINDOW_MS)
    assert before is not None
    canary, stable = before
    # The canary holds [0.1, 0.145): 45% of segment 1's users.
    assert (canary.impressions, canary.prompt_engagements) == (900, 45)
    assert (stable.impressions, stable.prompt_engagements) == (17_100, 855)


def test_only_windows_before_the_rollout_and_within_the_pre_period_count() -> None:
    book = filled_book()
    book.add(segment(0, 2 * WINDOW_MS, 1_000, 999))  # after the rollout began
    pre_period = SegmentPrePeriod(book, pre_period_ms=WINDOW_MS, holdout_share=0.0)
    before = pre_period.before(ROLLOUT, 0.1, until_ms=2 * WINDOW_MS)
    assert before is not None
    assert before[0] == ArmTotals(1_000, 100, 1, 0, 0)  # only the window just before


def test_no_pre_period_without_segment_aggregates_there() -> None:
    empty = SegmentPrePeriod(SegmentBook(keep_ms=HOUR_MS), pre_period_ms=HOUR_MS, holdout_share=0)
    assert empty.before(ROLLOUT, 0.1, until_ms=HOUR_MS) is None
    later = SegmentPrePeriod(filled_book(), pre_period_ms=WINDOW_MS, holdout_share=0.0)
    assert later.before(ROLLOUT, 0.1, until_ms=10 * HOUR_MS) is None


def test_old_windows_are_dropped_and_a_replayed_record_counts_once() -> None:
    book = filled_book()
    book.add(segment(3, 0, 1_000, 50))  # read again after a restart: replaces itself
    assert book.interval_totals(0.3, 0.4, 0, HOUR_MS) == ArmTotals(2_000, 100, 2, 0, 0)
    book.keep_ms = WINDOW_MS
    book.add(segment(3, 10 * WINDOW_MS, 1_000, 50))
    assert book.interval_totals(0.0, 1.0, 0, 2 * WINDOW_MS) is None


def test_segments_follow_the_traffic_splitters_positions() -> None:
    for user in ("u1", "u2", "someone"):
        position = user_position("salt", user)
        assert position_segment("salt", user) == int(position * POSITION_SEGMENTS)
