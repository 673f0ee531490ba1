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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from feedrank.core.clock import SystemClock
from feedrank.core.reporting import Reporter
from feedrank.core.settings import Settings
from feedrank.learners.batch.trainer import BatchTrainer, TrainerConfig
from feedrank.learners.batch.workers import SingleProcess, Workers, gathered_batch
from feedrank.learners.bootstrap import model_configs, starting_model
from feedrank.learners.catalogue_replay import replay_catalogue_if_present
from feedrank.learners.device import training_device
from feedrank.learners.examples import ExampleBatch
from feedrank.learners.joint import JointModel
from feedrank.learners.sources import WHOLE, Share
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
    since_ms: int | None = None  # only examples written (Kafka) or decided (file) since
    warm: bool = False  # start from the registry's latest version, not a fresh model


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
    workers: Workers | None = None,
) -> str | None:
    """Train the two-tower and the ranker on ``examples`` (``rounds`` rounds of a
    :class:`RoundHistory`, one of logs) with ``config``, hand their validation metrics to
    ``show_metrics``, and publish them to the registry (with ``publish``) if their AUC
    reaches ``min_auc`` (by default ``learner.min_auc``). Returns the version published,
    or None. Below the gate, :class:`BelowAucGateError` unless ``force``.

    With ``workers`` (``feedrank train --nproc N``), each process reads its share of the
    logs (or takes its share of a round history every process makes whole), the models
    train data-parallel, and the leader alone reports, judges and publishes."""
    reporter = reporter or Reporter.logging_to(log)
    workers = workers or SingleProcess()
    torch.set_num_threads(settings.learner.torch_threads)
    two_tower, ranker = model_configs(settings, config.seed)
    registry = LocalModelRegistry(settings.paths.registry)
    parent = ""
    device = training_device(settings.learner.device)
    if device.type != "cpu":
        reporter.say(f"training on {device}")

    def fit(run: TrainingRun, share: ExampleBatch, model: JointModel | None = None) -> TrainingRun:
        trainer = BatchTrainer(
            config, two_tower=two_tower, ranker=ranker, model=model, device=device
        )
        return fit_run(run, share, config, trainer, reporter=reporter, workers=workers)

    if isinstance(examples, LoggedExamples):
        run = logged_run(settings, examples, reporter, Share(workers.rank, workers.size))
        warm = None
        if examples.warm:
            warm, parent = starting_model(settings, registry, config.step())
            reporter.say(f"warm start from {parent or 'a fresh model (no version yet)'}")
        run = fit(run, run.batch, warm)
        if workers.size > 1:
            run = every_share(run, workers)
    else:
        run = examples.first_run()
        run = fit(run, workers.shard(run.batch))
        for _ in range(rounds - 1):
            run = examples.next_round(run, config.seed)
            run = fit(run, workers.shard(run.batch))
    if not workers.leader:
        return None
    assert run.report is not None
    report = run.report
    metrics = {
        **report.metrics,
        "epochs": float(report.epochs),
        "examples": float(run.example_count),
        "processes": float(workers.size),
        "training_seconds": report.seconds,
        "examples_per_second": report.training_examples * report.epochs / report.seconds
        if report.seconds > 0
        else math.nan,
    }
    metrics |= {f"{kind}_bytes_per_step": value for kind, value in report.bytes_per_step.items()}
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
    if not isinstance(examples, LoggedExamples):
        run = examples.for_publishing(run)
    version = publish_run(registry, run, metrics, parent=parent)
    reporter.say(f"published {version} to {settings.paths.registry}")
    return version


def logged_run(
    settings: Settings, examples: LoggedExamples, reporter: Reporter, share: Share = WHOLE
) -> TrainingRun:
    """The logged examples (``share``'s partitions or rows) as a run; with
    ``examples.catalogue``, the catalogue replayed (when the broker has its topics) to
    fill in what they lack."""
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
            share=share,
            since_ms=examples.since_ms,
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
    run: TrainingRun,
    share: ExampleBatch,
    config: TrainerConfig,
    trainer: BatchTrainer,
    *,
    reporter: Reporter,
    workers: Workers,
) -> TrainingRun:
    """``run`` trained by ``trainer`` on ``share`` (this process's share of its examples:
    all of them in one process), its steps counted by ``reporter.counting``."""
    count = int(workers.total(np.array([len(share)], dtype=np.float64))[0])
    largest, smallest = workers.most(len(share)), -workers.most(-len(share))
    if largest > 1.25 * max(smallest, 1):
        reporter.warn(
            f"the shares are uneven ({smallest:,} to {largest:,} examples): the smaller "
            "ones repeat within an epoch; give the topic a multiple of --nproc partitions"
        )
    local_batch = math.ceil(config.batch_size / workers.size)
    steps = config.max_epochs * math.ceil(len(share) * (1 - config.validation_share) / local_batch)
    spread = f" in {workers.size} processes" if workers.size > 1 else ""
    with reporter.counting(f"training on {count:,} examples{spread}", steps) as advance:
        report = trainer.fit(share, progress=advance, workers=workers)
    return run.trained(trainer, report)


def every_share(run: TrainingRun, workers: Workers) -> TrainingRun:
    """On the leader, ``run`` with what publishing needs from every process's share:
    each post any share saw (with the first and last decision times) and the offsets
    each share read up to; elsewhere ``run`` unchanged. Collective: every process calls."""
    times = run.batch.decision_time_ms
    _, first = np.unique(run.batch.posts.post_key, return_index=True)
    if len(run.batch):
        first = np.union1d(first, [int(times.argmin()), int(times.argmax())])
    posts = gathered_batch(workers, run.batch.take(first.astype(np.int64)))
    offsets = workers.gather(run.kafka_offsets)
    count = int(workers.total(np.array([len(run.batch)], dtype=np.float64))[0])
    if not workers.leader or posts is None:
        return run
    merged = {name: offset for share in offsets for name, offset in share.items()}
    return replace(run, batch=posts, kafka_offsets=merged, examples_read=count)
