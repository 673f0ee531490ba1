"""Rolling metrics follow the stream; ADWIN raises a drift event when the loss shifts."""

from __future__ import annotations

import numpy as np

from feedrank.learners.online.monitoring import DriftEvent, StreamMonitor


def test_rolling_metrics_and_drift_on_a_loss_shift() -> None:
    rng = np.random.default_rng(0)
    events: list[DriftEvent] = []
    monitor = StreamMonitor(window=500, sample_every=1, on_drift=events.append)
    for _ in range(10):  # a good model: labels follow its probabilities
        probabilities = rng.uniform(0.05, 0.95, 200)
        monitor.update((rng.random(200) < probabilities).astype(float), probabilities)
    good = monitor.snapshot()
    assert good["rolling_auc"] > 0.7
    assert 0.8 < good["calibration"] < 1.25
    assert not events
    for _ in range(10):  # the world flips: the same predictions are now wrong
        probabilities = rng.uniform(0.05, 0.95, 200)
        monitor.update((rng.random(200) > probabilities).astype(float), probabilities)
    assert events
    assert monitor.snapshot()["drift_events"] == len(events)
    assert monitor.snapshot()["rolling_auc"] < 0.5
