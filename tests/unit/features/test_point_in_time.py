from __future__ import annotations

import numpy as np

from feedrank.core.feature_schema import IntArray
from feedrank.core.time_units import DAY_MS
from feedrank.features.point_in_time import PointInTimeCounts

T0 = 1_764_000_000_000


def rows(*indices: int) -> IntArray:
    return np.array(indices, dtype=np.int64)


def test_point_in_time_counts_handle_repeats_and_empty_requests() -> None:
    counts = PointInTimeCounts(size=5, retention_ms=DAY_MS)
    counts.add(rows(2, 2, 4), T0)
    counts.add(rows(2, 3), T0 + 2)
    np.testing.assert_array_equal(counts.at(rows(2, 3, 4, 2), T0 + 5), [3.0, 1.0, 1.0, 3.0])
    np.testing.assert_array_equal(counts.at(rows(2, 3, 4, 2), T0 + 1), [2.0, 0.0, 1.0, 2.0])
    assert counts.at(rows(), T0 + 1).shape == (0,)
