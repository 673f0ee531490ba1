"""Simulated history for training: spread at the configured pace, ending before the world."""

from __future__ import annotations

import numpy as np
import pytest

from feedrank.core.settings import load_settings
from feedrank.learners.batch.trainer import BatchTrainer
from feedrank.learners.bootstrap import model_configs, trainer_config
from feedrank.simulate.training_history import simulated_history
from feedrank.simulate.world_views import local_world, world_topics

WORLD = {"num_users": 60, "num_creators": 20, "num_posts": 400, "start_ms": 1_764_000_000_000}


@pytest.mark.parametrize("interval_s", [2.0, 30.0])
def test_history_decisions_come_at_the_configured_pace_before_the_world_starts(
    interval_s: float,
) -> None:
    settings = load_settings(world=WORLD, learner={"history_decision_interval_s": interval_s})
    world = local_world(settings)
    history = simulated_history(
        settings, world, world_topics(world), examples_per_round=500, seed=0
    )
    run = history.first_run()
    times = np.unique(np.asarray(run.batch.decision_time_ms, dtype=np.int64))
    gaps = np.diff(times)
    assert gaps.min() >= interval_s * 1000
    assert np.all(gaps % int(interval_s * 1000) == 0)  # a decision with no slate skips a beat
    assert times.max() < world.config.start_ms


def test_without_time_context_training_does_not_depend_on_when_the_world_starts() -> None:
    reports = []
    for shift_ms in (0, 5 * 3_600_000 + 900_000):
        world_settings = {**WORLD, "start_ms": WORLD["start_ms"] + shift_ms}
        settings = load_settings(world=world_settings, learner={"time_context": False})
        world = local_world(settings)
        history = simulated_history(
            settings, world, world_topics(world), examples_per_round=800, seed=0
        )
        run = history.first_run()
        two_tower, ranker = model_configs(settings)
        assert not ranker.time_context
        trainer = BatchTrainer(
            trainer_config(settings, max_epochs=1), two_tower=two_tower, ranker=ranker
        )
        reports.append(trainer.fit(run.batch).metrics)

    assert reports[0] == reports[1]  # the same world and history, shifted in time
