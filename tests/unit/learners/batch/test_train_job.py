"""The batch training job: rounds from a round history, the AUC gate, publishing."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from feedrank.core.reporting import Reporter
from feedrank.core.settings import Settings, load_settings
from feedrank.learners.batch.train_job import BelowAucGateError, train_and_publish
from feedrank.learners.bootstrap import trainer_config
from feedrank.learners.examples import ExampleBatch, concat
from feedrank.learners.training_run import TrainingRun
from feedrank.registry import LocalModelRegistry
from tests.unit.learners.factories import simulated_batches


def labelled_batch(index: int) -> ExampleBatch:
    """One of two batches of 200 simulated examples, positives throughout, so that the
    held-out latest decisions have an AUC."""
    batch = simulated_batches(2)[index]
    batch.labels[::7] = 1.0
    return batch


@dataclass
class CountedHistory:
    """Two rounds of 200 simulated examples; records what the job asked of it."""

    seeds: list[int] = field(default_factory=list)
    published: list[int] = field(default_factory=list)

    def first_run(self) -> TrainingRun:
        return TrainingRun(labelled_batch(0), "counted")

    def next_round(self, run: TrainingRun, seed: int) -> TrainingRun:
        assert run.trainer is not None  # a later round is logged by a trained model
        self.seeds.append(seed)
        more = labelled_batch(1)
        return replace(run, batch=concat([run.batch, more]), trainer=None, report=None)

    def for_publishing(self, run: TrainingRun) -> TrainingRun:
        self.published.append(len(run.batch))
        return run


@dataclass
class Recorded:
    said: list[str] = field(default_factory=list)
    warned: list[str] = field(default_factory=list)
    counted: list[tuple[str, int]] = field(default_factory=list)

    def reporter(self) -> Reporter:
        base = Reporter()

        def counting(description: str, total: int):  # type: ignore[no-untyped-def]
            self.counted.append((description, total))
            return base.counting(description, total)

        return Reporter(say=self.said.append, warn=self.warned.append, counting=counting)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        learner={
            "user_id_buckets": 256,
            "post_id_buckets": 512,
            "torch_threads": 1,
            "max_epochs": 1,
            "min_auc": 1.0,
        },
        paths={"state_dir": tmp_path},
    )


def test_below_the_gate_nothing_is_published(settings: Settings) -> None:
    shown: list[dict[str, float]] = []
    with pytest.raises(BelowAucGateError, match=r"is below the gate 1\.00: not published"):
        train_and_publish(
            settings, CountedHistory(), trainer_config(settings), show_metrics=shown.append
        )
    (metrics,) = shown  # shown before the gate refuses
    assert {"auc", "log_loss", "epochs", "examples"} <= set(metrics)
    assert LocalModelRegistry(settings.paths.registry).versions() == []


def test_a_forced_publish_trains_every_round_and_embeds_the_historys_catalogue(
    settings: Settings,
) -> None:
    history, recorded = CountedHistory(), Recorded()
    config = trainer_config(settings, seed=7)
    version = train_and_publish(
        settings, history, config, rounds=2, force=True, reporter=recorded.reporter()
    )
    assert history.seeds == [7]  # one later round, logged with the run's seed
    assert history.published == [400]
    assert [description for description, _ in recorded.counted] == [
        "training on 200 examples",
        "training on 400 examples",
    ]
    (warning,) = recorded.warned
    assert warning.endswith("is below the gate 1.00; --force given")
    assert recorded.said == [f"published {version} to {settings.paths.registry}"]
    (manifest,) = LocalModelRegistry(settings.paths.registry).versions()
    assert manifest.version == version
    assert manifest.training.source == "counted"
    assert manifest.training.examples == 400


def test_without_publish_the_job_only_trains(settings: Settings) -> None:
    version = train_and_publish(
        settings, CountedHistory(), trainer_config(settings), min_auc=0.0, publish=False
    )
    assert version is None
    assert LocalModelRegistry(settings.paths.registry).versions() == []
