"""The online learner's publish gate: a version it publishes must still rank and still be
calibrated on the stream it learned from.

Each publish is judged on the :class:`StreamMonitor`'s progressive validation (every
micro-batch scored before the model learned from it, so the figures are out of
sample): the rolling ROC AUC must reach ``min_auc`` and the rolling calibration (mean
prediction / observed engagement rate) must lie within ``calibration_range``. Where the
window has no figure yet (too few examples, no engagement), the gate is skipped and
says so.

The version is published either way, with the verdict in its metrics
(``publish_gate_passed`` 1 or 0, and the floor and range it was judged against): the
learner's lineage stays whole, ``rollout models`` shows the verdict, and deploy refuses
a failed version before its first step (``feedrank.deploy.learner_gate``). Every
verdict is counted in ``feedrank_learner_publish_gate_total{verdict}``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from feedrank.registry import publish_verdict as recorded_as

Verdict = Literal["passed", "failed", "skipped"]


@dataclass(frozen=True)
class GateOutcome:
    verdict: Verdict
    reason: str
    metrics: dict[str, float]  # what goes into the version's metrics


@dataclass(frozen=True)
class PublishGate:
    """Judge a version on its stream's rolling AUC and calibration."""

    min_auc: float = 0.55
    calibration_range: tuple[float, float] = (0.33, 3.0)

    def __post_init__(self) -> None:
        low, high = self.calibration_range
        if not 0.0 <= self.min_auc <= 1.0 or not 0.0 < low < 1.0 < high:
            raise ValueError("min_auc must be in [0, 1] and the calibration range around 1")

    def judge(self, snapshot: Mapping[str, float]) -> GateOutcome:
        """The verdict on the monitor's ``snapshot`` (``rolling_auc``, ``calibration``)."""
        auc = snapshot.get(recorded_as.ROLLING_AUC, math.nan)
        calibration = snapshot.get(recorded_as.CALIBRATION, math.nan)
        low, high = self.calibration_range
        recorded = {
            recorded_as.MIN_AUC: self.min_auc,
            recorded_as.CALIBRATION_LOW: low,
            recorded_as.CALIBRATION_HIGH: high,
        }
        if not (math.isfinite(auc) and math.isfinite(calibration)):
            return GateOutcome(
                "skipped", "no rolling AUC or calibration yet (too few examples)", recorded
            )
        problems = []
        if auc < self.min_auc:
            problems.append(f"rolling AUC {auc:.3f} below the floor {self.min_auc:.2f}")
        if not low <= calibration <= high:
            problems.append(f"calibration {calibration:.2f} outside [{low:.2f}, {high:.2f}]")
        if problems:
            return GateOutcome("failed", "; ".join(problems), {**recorded, recorded_as.PASSED: 0.0})
        return GateOutcome(
            "passed",
            f"rolling AUC {auc:.3f} >= {self.min_auc:.2f}, calibration {calibration:.2f}",
            {**recorded, recorded_as.PASSED: 1.0},
        )
