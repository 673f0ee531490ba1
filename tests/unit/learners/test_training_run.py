"""Simulated history for training: spread at the configured pace, ending before the world."""

from __future__ import annotations

import numpy as np
import pytest

from feedrank.core.settings import load_settings
from feedrank.learners.bootstrap import local_world, world_topics
from feedrank.learners.training_run import examples_for_training

WORLD = {"num_users": 60, "num_creators": 20, "num_posts": 400, "start_ms": 1_764_000_000_000}


@pytest.mark.parametrize("interval_s", [2.0, 30.0])
def test_history_decisions_come_at_the_configured_pace_before_the_world_starts(
    interval_s: float,
) -> None:
    settings = load_settings(world=WORLD, learner={"history_decision_interval_s": interval_s})
    world = local_world(settings)
    run = examples_for_training(
        settings, world, world_topics(world), from_kafka=False, file=None, simulate=500, seed=0
    )
    times = np.unique(np.asarray(run.batch.decision_time_ms, dtype=np.int64))
    gaps = np.diff(times)
    assert gaps.min() >= interval_s * 1000
    assert np.all(gaps % int(interval_s * 1000) == 0)  # a decision with no slate skips a beat
    assert times.max() < world.config.start_ms
