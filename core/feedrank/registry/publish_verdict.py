"""A learner's publish-gate verdict as it travels in the registry: the online learner
writes it into each version's metrics (``feedrank.learners.online.publish_gate``), the
deploy service refuses a failed version before its first step, and ``rollout models``
shows it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

PASSED = "publish_gate_passed"  # 1.0 passed, 0.0 failed; absent: not judged
MIN_AUC = "publish_gate_min_auc"
CALIBRATION_LOW = "publish_gate_calibration_low"
CALIBRATION_HIGH = "publish_gate_calibration_high"
ROLLING_AUC = "rolling_auc"
CALIBRATION = "calibration"


@dataclass(frozen=True)
class PublishVerdict:
    """Whether a version passed its learner's gate, and on what figures."""

    passed: bool
    rolling_auc: float
    calibration: float
    min_auc: float
    calibration_range: tuple[float, float]

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, float]) -> PublishVerdict | None:
        """The verdict in a version's metrics; None for a version never judged."""
        if PASSED not in metrics:
            return None
        return cls(
            passed=metrics[PASSED] >= 0.5,
            rolling_auc=metrics.get(ROLLING_AUC, math.nan),
            calibration=metrics.get(CALIBRATION, math.nan),
            min_auc=metrics.get(MIN_AUC, math.nan),
            calibration_range=(
                metrics.get(CALIBRATION_LOW, math.nan),
                metrics.get(CALIBRATION_HIGH, math.nan),
            ),
        )

    def summary(self) -> str:
        low, high = self.calibration_range
        return (
            f"rolling AUC {self.rolling_auc:.3f} (floor {self.min_auc:.2f}), calibration "
            f"{self.calibration:.2f} (range [{low:.2f}, {high:.2f}])"
        )
