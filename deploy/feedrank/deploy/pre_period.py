"""A rollout's pre-period: the canary's and stable's users' totals before it began.

The arms are fixed sets of users (a salted hash puts each user at a position on
[0, 1); the canary holds an interval of it), so one arm may simply hold users who engage
more, whatever they are shown. The canary analysis takes the same users' difference
from before the rollout off each comparison (``sequential.corrected_rate_difference``);
``benchmarks/canary_sensitivity.py`` measures what that does.

The join counts every impression and prompt reward by segment of users (their position
among ``segments`` equal parts of [0, 1)), whatever version served them, in 5-minute
``SegmentAggregate`` records. :class:`SegmentBook` keeps them; :class:`SegmentPrePeriod`
sums, over ``pre_period_ms`` before the rollout began, the segments the canary's interval
covers (a segment partly covered counts pro rata) and those stable's covers. The
traffic splitter lays out the holdout first, then the canary, then stable, so with a
holdout share ``h`` and a canary weight ``w`` the canary holds ``[h, h + w (1 - h))``.
"""

from __future__ import annotations

import threading

from feedrank.deploy.analysis import ArmTotals
from feedrank.deploy.state import Rollout
from feedrank.v1 import events_pb2

_FIELDS = ("impressions", "prompt_engagements", "prompt_reports", "prompt_blocks", "prompt_hides")


class SegmentBook:
    """Segment aggregates by (segment, window); a record read twice replaces itself."""

    def __init__(self, keep_ms: int) -> None:
        self.keep_ms = keep_ms  # windows further behind the latest one are dropped
        self._lock = threading.Lock()
        self._windows: dict[tuple[int, int], tuple[float, ...]] = {}
        self._segments = 0
        self._latest_ms = 0

    def add(self, aggregate: events_pb2.SegmentAggregate) -> None:
        if aggregate.segments <= 0 or not 0 <= aggregate.segment < aggregate.segments:
            return
        counts = tuple(float(getattr(aggregate, name)) for name in _FIELDS)
        with self._lock:
            if aggregate.segments != self._segments:  # another layout: start afresh
                self._windows.clear()
                self._segments = aggregate.segments
            self._windows[(aggregate.segment, aggregate.window_start_ms)] = counts
            if aggregate.window_end_ms > self._latest_ms:
                self._latest_ms = aggregate.window_end_ms
                self._drop_older_than(self._latest_ms - self.keep_ms)

    def interval_totals(
        self, low: float, high: float, since_ms: int, until_ms: int
    ) -> ArmTotals | None:
        """The totals of the users at positions in [low, high), over the windows that
        start in [since_ms, until_ms); None without any segment aggregate there."""
        with self._lock:
            segments = self._segments
            if segments == 0:
                return None
            sums = [0.0] * len(_FIELDS)
            for (segment, start_ms), counts in self._windows.items():
                if not since_ms <= start_ms < until_ms:
                    continue
                share = _overlap(segment / segments, (segment + 1) / segments, low, high)
                if share > 0.0:
                    for index, count in enumerate(counts):
                        sums[index] += share * segments * count
        if sums[0] <= 0.0:
            return None
        return ArmTotals(*(round(value) for value in sums))

    def _drop_older_than(self, cutoff_ms: int) -> None:
        for key in [key for key in self._windows if key[1] < cutoff_ms]:
            del self._windows[key]


def _overlap(low: float, high: float, other_low: float, other_high: float) -> float:
    """Length of [low, high) ∩ [other_low, other_high)."""
    return max(0.0, min(high, other_high) - max(low, other_low))


class SegmentPrePeriod:
    """The canary's and stable's users' totals over ``pre_period_ms`` before a rollout."""

    def __init__(self, book: SegmentBook, *, pre_period_ms: int, holdout_share: float) -> None:
        self.book = book
        self.pre_period_ms = pre_period_ms
        self.holdout_share = holdout_share

    def before(
        self, rollout: Rollout, canary_weight: float, until_ms: int
    ) -> tuple[ArmTotals, ArmTotals] | None:
        del rollout  # the layout depends only on the weight and the holdout
        start = self.holdout_share
        boundary = start + canary_weight * (1.0 - start)
        since_ms = until_ms - self.pre_period_ms
        canary = self.book.interval_totals(start, boundary, since_ms, until_ms)
        stable = self.book.interval_totals(boundary, 1.0, since_ms, until_ms)
        if canary is None or stable is None:
            return None
        return canary, stable
