"""Per-row counts that can be read as they were at any retained time.

The feature store keeps each post's impression and engagement counts in a
:class:`PointInTimeCounts`: a cumulative array holding every increment up to a
watermark, increments dated after the watermark waiting in a heap, and a time-ordered
log of the applied ones. A read at or after the watermark (serving asks "now") folds
what has come due into the array and gathers, which is O(rows); a read in the past
subtracts the logged increments newer than ``at_ms``. The log keeps ``retention_ms``
behind the latest read; reads further back raise rather than answer wrongly (so one
read far ahead of "now" makes reads at "now" fail: ask for times the clock has reached).
"""

from __future__ import annotations

import heapq
import itertools
from bisect import bisect_right

import numpy as np
import numpy.typing as npt

from feedrank.core.feature_schema import IntArray

_Counts = npt.NDArray[np.float64]


class HistoryNotRetained(ValueError):
    """A read as of a time older than the history the counts keep."""

    def __init__(self, at_ms: int, from_ms: int) -> None:
        super().__init__(f"at_ms={at_ms} is before the retained history (from {from_ms})")
        self.at_ms = at_ms
        self.from_ms = from_ms


class PointInTimeCounts:
    """Per-row counts that can be read as of any time within the retained history.

    Not thread-safe by itself: :class:`~feedrank.features.store.InMemoryFeatureStore`
    serialises access.
    """

    def __init__(self, size: int, retention_ms: int) -> None:
        self._applied = np.zeros(size, dtype=np.float64)  # increments with ts <= watermark
        self._watermark_ms: int | None = None
        self._log_ts: list[int] = []  # applied increments, ascending ts
        self._log_rows: list[IntArray] = []
        self._pending: list[tuple[int, int, IntArray]] = []  # heap of (ts, seq, rows)
        self._sequence = itertools.count()
        self._retention_ms = retention_ms
        self._exact_from_ms: int | None = None  # lookups before this could be wrong

    def grow(self, size: int) -> None:
        """Room for rows up to ``size`` (new rows count zero)."""
        if size > self._applied.shape[0]:
            grown = np.zeros(max(size, 2 * self._applied.shape[0]), dtype=np.float64)
            grown[: self._applied.shape[0]] = self._applied
            self._applied = grown

    def add(self, rows: IntArray, at_ms: int) -> None:
        """Count one for each of ``rows`` (repeats count repeatedly) at ``at_ms``."""
        if self._watermark_ms is None or at_ms > self._watermark_ms:
            heapq.heappush(self._pending, (at_ms, next(self._sequence), rows))
            return
        self._apply(rows, at_ms, insort_index=bisect_right(self._log_ts, at_ms))

    def at(self, rows: IntArray, at_ms: int) -> _Counts:
        """Counts of ``rows`` including exactly the increments dated at or before ``at_ms``."""
        if self._watermark_ms is None or at_ms >= self._watermark_ms:
            self._advance(at_ms)
            counts: _Counts = self._applied[rows]
            return counts
        if self._exact_from_ms is not None and at_ms < self._exact_from_ms:
            raise HistoryNotRetained(at_ms, self._exact_from_ms)
        return self._applied[rows] - self._increments_after(rows, at_ms)

    @property
    def watermark_ms(self) -> int | None:
        """The latest lookup time so far (increments up to it are applied)."""
        return self._watermark_ms

    def _advance(self, at_ms: int) -> None:
        while self._pending and self._pending[0][0] <= at_ms:
            ts, _, rows = heapq.heappop(self._pending)
            self._apply(rows, ts, insort_index=len(self._log_ts))
        self._watermark_ms = at_ms
        self._forget_before(at_ms - self._retention_ms)

    def _apply(self, rows: IntArray, at_ms: int, insort_index: int) -> None:
        np.add.at(self._applied, rows, 1.0)
        self._log_ts.insert(insort_index, at_ms)
        self._log_rows.insert(insort_index, rows)

    def _forget_before(self, cutoff_ms: int) -> None:
        drop = bisect_right(self._log_ts, cutoff_ms)
        if drop:
            self._exact_from_ms = self._log_ts[drop - 1]
            del self._log_ts[:drop]
            del self._log_rows[:drop]

    def _increments_after(self, rows: IntArray, at_ms: int) -> _Counts:
        start = bisect_right(self._log_ts, at_ms)
        if start == len(self._log_ts) or rows.shape[0] == 0:
            return np.zeros(rows.shape[0], dtype=np.float64)
        newer = np.concatenate(self._log_rows[start:])
        unique, inverse = np.unique(rows, return_inverse=True)
        slot = np.minimum(np.searchsorted(unique, newer), unique.shape[0] - 1)
        hit = unique[slot] == newer
        per_unique = np.bincount(slot[hit], minlength=unique.shape[0]).astype(np.float64)
        increments: _Counts = per_unique[inverse]
        return increments
