"""The batch training job (``feedrank train``): fit both models on one source of examples,
round after round where the source has rounds, and publish them behind an AUC gate.

Examples come from the logs (:class:`LoggedExamples`: ``topics.examples`` or an
exported file, with the catalogue replayed to fill in what they lack) or from a
:class:`RoundHistory`, whose later rounds are logged by the model trained so far (the
simulated history the CLI builds: the learners never import the simulator).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from feedrank.core.clock import SystemClock
from feedrank.core.reporting import Reporter
from feedrank.core.settings import Settings
from feedrank.learners.batch.trainer import BatchTrainer, TrainerConfig
from feedrank.learners.bootstrap import model_configs
from feedrank.learners.catalogue_replay import replay_catalogue_if_present
from feedrank.learners.training_run import TrainingRun, logged_examples, publish_run
from feedrank.registry import LocalModelRegistry

log = logging.getLogger("feedrank.learners")


@dataclass(frozen=True)
class LoggedExamples:
    """Logged examples: ``topics.examples`` from its start to its end offsets
    (``from_kafka``) or an exported .parquet or .csv ``file``; with ``catalogue``, the
    catalogue topics are replayed, their live posts embedded and indexed in the version,
    and their topics and features fill in what the logs lack."""

    from_kafka: bool = False
    file: Path | None = None
    catalogue: bool = True


class RoundHistory(Protocol):
    """Examples made round by round, each later round logged by the model trained on the
    rounds before (the simulated history)."""

    def first_run(self) -> TrainingRun: ...

    def next_round(self, run: TrainingRun, seed: int) -> TrainingRun:
        """``run``'s examples and another round's, logged by ``run``'s model."""
        ...

    def for_publishing(self, run: TrainingRun) -> TrainingRun:
        """``run`` with the catalogue to embed and index beside its examples' posts."""
        ...


class BelowAucGateError(Exception):
    """The trained models' AUC is below the gate, and publishing was not forced."""


def train_and_publish(
    settings: Settings,
    examples: LoggedExamples | RoundHistory,
    config: TrainerConfig,
    *,
    rounds: int = 1,
    min_auc: float | None = None,
    force: bool = False,
    publish: bool = True,
    show_metrics: Callable[[dict[str, float]], None] | None = None,
    reporter: Reporter | None = None,
) -> str | None:
    """Train the two-tower and the ranker on ``examples`` (``rounds`` rounds of a
    :class:`RoundHistory`, one of logs) with ``config``, hand their validation metrics to
    ``show_metrics``, and publish them to the registry (with ``publish``) if their AUC
    reaches ``min_auc`` (by default ``learner.min_auc``). Returns the version published,
    or None. Below the gate, :class:`BelowAucGateError` unless ``force``."""
    reporter = reporter or Reporter.logging_to(log)
    torch.set_num_threads(settings.learner.torch_threads)
    two_tower, ranker = model_configs(settings, config.seed)

    def fit(run: TrainingRun) -> TrainingRun:
        trainer = BatchTrainer(config, two_tower=two_tower, ranker=ranker)
        return fit_run(run, config, trainer, reporter)

    if isinstance(examples, LoggedExamples):
        run = fit(logged_run(settings, examples, reporter))
    else:
        run = fit(examples.first_run())
        for _ in range(rounds - 1):
            run = fit(examples.next_round(run, config.seed))
    assert run.report is not None
    metrics = {
        **run.report.metrics,
        "epochs": float(run.report.epochs),
        "examples": float(len(run.batch)),
    }
    if show_metrics is not None:
        show_metrics(metrics)
    gate = settings.learner.min_auc if min_auc is None else min_auc
    auc = metrics["auc"]
    if not np.isfinite(auc) or auc < gate:
        below = f"AUC {auc:.4f} is below the gate {gate:.2f}"
        if not force:
            raise BelowAucGateError(f"{below}: not published")
        reporter.warn(f"{below}; --force given")
    if not publish:
        return None
    registry = LocalModelRegistry(settings.paths.registry)
    if not isinstance(examples, LoggedExamples):
        run = examples.for_publishing(run)
    version = publish_run(registry, run, metrics)
    reporter.say(f"published {version} to {settings.paths.registry}")
    return version


def logged_run(settings: Settings, examples: LoggedExamples, reporter: Reporter) -> TrainingRun:
    """The logged examples as a run; with ``examples.catalogue``, the catalogue replayed
    (when the broker has its topics) to fill in what they lack."""
    state = None
    if examples.catalogue:
        state = replay_catalogue_if_present(
            settings, without="training on the logs alone", reporter=reporter
        )
        if state is not None:
            reporter.say(
                f"catalogue: {state.live_rows().size:,} live posts, {state.num_users:,} users"
            )
    with reporter.working("reading examples…"):
        run = logged_examples(
            settings,
            from_kafka=examples.from_kafka,
            file=examples.file,
            catalogue=state,
            now_ms=SystemClock().now_ms(),
        )
    if run.not_rejoined:
        reporter.warn(f"compact examples left out, post version not found: {run.not_rejoined}")
    users, posts = run.backfilled
    if users or posts:
        reporter.say(
            f"features the logs lack filled from the catalogue: users of {users:,} examples, "
            f"posts of {posts:,}"
        )
    return run


def fit_run(
    run: TrainingRun, config: TrainerConfig, trainer: BatchTrainer, reporter: Reporter
) -> TrainingRun:
    """``run`` trained by ``trainer``, its steps counted by ``reporter.counting``."""
    training_rows = len(run.batch) * (1 - config.validation_share)
    steps = config.max_epochs * math.ceil(training_rows / config.batch_size)
    with reporter.counting(f"training on {len(run.batch):,} examples", steps) as advance:
        report = trainer.fit(run.batch, progress=advance)
    return run.trained(trainer, report)
