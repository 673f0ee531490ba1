"""The batch trainer's settings."""

from __future__ import annotations

from feedrank.core.settings import load_settings
from feedrank.learners.batch.trainer import BatchTrainer
from feedrank.learners.bootstrap import trainer_config


def test_batch_training_takes_its_own_learning_rate_not_the_online_learners() -> None:
    settings = load_settings(learner={"learning_rate": 1e-2, "batch_learning_rate": 2e-4})
    assert trainer_config(settings).learning_rate == 2e-4
    assert trainer_config(settings, learning_rate=5e-3).learning_rate == 5e-3  # --learning-rate
    trainer = BatchTrainer(trainer_config(settings))
    rates = {group["lr"] for group in trainer.model.dense_optimizer.param_groups}
    assert rates == {2e-4}
