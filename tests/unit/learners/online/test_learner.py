"""The online update step: prequential scores come from before the update."""

from __future__ import annotations

import dataclasses

import numpy as np

from feedrank.learners.joint import StepConfig
from feedrank.learners.online.learner import OnlineLearner, OnlineLearnerConfig
from tests.unit.learners.factories import simulated_batches, small_ranker, small_two_tower


def test_a_scored_step_returns_the_predictions_from_before_it_learned() -> None:
    config = OnlineLearnerConfig(step=StepConfig(frequency_buckets=1024, learning_rate=0.05))
    # Without id dropout the step's forward pass equals serving's.
    learner = OnlineLearner.new(
        config,
        two_tower=dataclasses.replace(small_two_tower(), id_dropout=0.0),
        ranker=dataclasses.replace(small_ranker(), id_dropout=0.0),
    )
    batch = simulated_batches()[0]
    before = learner.predict_proba(batch)
    loss, scored = learner.learn_scored(batch)
    np.testing.assert_allclose(scored, before, rtol=1e-5, atol=1e-7)
    assert np.isfinite(loss)
    assert learner.examples_learned == len(batch)
    assert not np.allclose(learner.predict_proba(batch), before)  # it did learn
