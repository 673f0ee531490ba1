"""Every learner passes every contract check (river-style: one list of checks, all learners)."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedrank.learners.batch.trainer import BatchTrainer, TrainerConfig
from feedrank.learners.checks import ALL_CHECKS, Check, Learner
from feedrank.learners.joint import StepConfig
from feedrank.learners.online.learner import OnlineLearner, OnlineLearnerConfig
from tests.unit.learners.factories import simulated_batches, small_ranker, small_two_tower


def online(seed: int, *, inverse_propensity: bool = False) -> Learner:
    config = OnlineLearnerConfig(
        step=StepConfig(seed=seed, frequency_buckets=1024), inverse_propensity=inverse_propensity
    )
    return OnlineLearner.new(config, two_tower=small_two_tower(seed), ranker=small_ranker(seed))


def online_ips(seed: int) -> Learner:
    return online(seed, inverse_propensity=True)


def batch_trainer(seed: int) -> Learner:
    config = TrainerConfig(batch_size=64, max_epochs=2, seed=seed, recall_k=5)
    return BatchTrainer(config, two_tower=small_two_tower(seed), ranker=small_ranker(seed))


LEARNERS = {"online": online, "online_ips": online_ips, "batch_trainer": batch_trainer}


@pytest.mark.parametrize("check", ALL_CHECKS, ids=lambda check: check.__name__)
@pytest.mark.parametrize("learner", sorted(LEARNERS))
def test_learner_contract(learner: str, check: Check, tmp_path: Path) -> None:
    check(LEARNERS[learner], simulated_batches(), tmp_path)
