"""Streaming evaluation and drift detection of the online learner (river).

Progressive validation: each micro-batch is scored by the model *before* it learns from
it, and those predictions feed a rolling ROC AUC, a rolling log loss and a rolling
calibration ratio (mean prediction / observed engagement rate), over every
``sample_every``-th example (river updates one example at a time in Python: a 1-in-4
sample keeps them off the learner's critical path). ADWIN watches the
per-example log loss; when its mean shifts, a :class:`DriftEvent` is raised (counted as
a metric, logged, and handed to ``on_drift``, which may start a batch retrain).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from river import drift, metrics, utils

FloatLike = npt.NDArray[np.floating[Any]]


@dataclass(frozen=True)
class DriftEvent:
    examples_seen: int
    mean_loss: float  # ADWIN's window mean after the change


class StreamMonitor:
    """Rolling metrics over the last ``window`` examples and ADWIN on their loss."""

    def __init__(
        self,
        *,
        window: int = 2_000,
        adwin_delta: float = 0.002,
        sample_every: int = 4,
        on_drift: Callable[[DriftEvent], None] | None = None,
    ) -> None:
        if window < 1 or sample_every < 1:
            raise ValueError("window and sample_every must be >= 1")
        self.auc = metrics.RollingROCAUC(window_size=window)  # type: ignore[no-untyped-call]
        self.log_loss = utils.Rolling(metrics.LogLoss(), window_size=window)  # type: ignore[no-untyped-call]
        self.adwin = drift.ADWIN(delta=adwin_delta)  # type: ignore[no-untyped-call]
        self.sample_every = sample_every
        self.on_drift = on_drift
        self.examples_seen = 0
        self.drift_events = 0
        self._recent: deque[tuple[float, float]] = deque(maxlen=window)

    def update(self, labels: FloatLike, probabilities: FloatLike) -> list[DriftEvent]:
        """Account for one scored batch (predictions made before learning from it)."""
        events: list[DriftEvent] = []
        clipped = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-7, 1 - 1e-7)
        truth = np.asarray(labels) > 0.5
        losses = -np.where(truth, np.log(clipped), np.log(1 - clipped))
        for row in range(0, truth.shape[0], self.sample_every):
            label, probability = bool(truth[row]), float(clipped[row])
            self.auc.update(label, probability)  # type: ignore[no-untyped-call]
            self.log_loss.update(label, {True: probability, False: 1 - probability})  # type: ignore[no-untyped-call]
            self._recent.append((probability, float(label)))
            self.adwin.update(float(losses[row]))  # type: ignore[no-untyped-call]
            if self.adwin.drift_detected:
                self.drift_events += 1
                event = DriftEvent(self.examples_seen + row, float(self.adwin.estimation))
                events.append(event)
                if self.on_drift is not None:
                    self.on_drift(event)
        self.examples_seen += truth.shape[0]
        return events

    def snapshot(self) -> dict[str, float]:
        """Current rolling metrics (NaN where undefined yet)."""
        predicted = sum(p for p, _ in self._recent)
        observed = sum(y for _, y in self._recent)
        return {
            "rolling_auc": float(self.auc.get()) if self._recent else math.nan,  # type: ignore[no-untyped-call]
            "rolling_log_loss": float(self.log_loss.get()) if self._recent else math.nan,
            "calibration": predicted / observed if observed > 0 else math.nan,
            "drift_events": float(self.drift_events),
        }
