"""One ``feedrank train`` run: its examples, provenance, trained models and publication."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from feedrank.core.features.store import InMemoryFeatureStore
from feedrank.core.registry import ModelRegistry, TrainingData
from feedrank.core.settings import Settings
from feedrank.core.world import World
from feedrank.learners.batch.trainer import BatchTrainer, TrainingReport
from feedrank.learners.examples import ExampleBatch, batch_from_examples, concat
from feedrank.learners.post_topics import TopicLookup
from feedrank.learners.posts import PostCatalogue
from feedrank.learners.publishing import publish_version
from feedrank.learners.simulation import ExampleSimulator, SimulationConfig
from feedrank.learners.sources import read_examples, read_kafka_range


@dataclass(frozen=True)
class TrainingRun:
    batch: ExampleBatch
    source: str
    kafka_offsets: dict[str, int] = field(default_factory=dict)
    simulator: ExampleSimulator | None = None
    trainer: BatchTrainer | None = None
    report: TrainingReport | None = None

    def trained(self, trainer: BatchTrainer, report: TrainingReport) -> TrainingRun:
        return replace(self, trainer=trainer, report=report)

    def next_round(self, world: World, topics: TopicLookup, count: int, seed: int) -> TrainingRun:
        """More simulated traffic, logged by this run's model (epsilon-greedy), added on."""
        if self.simulator is None or self.trainer is None:
            raise ValueError("only a trained simulated run has a next round")
        simulator = self.simulator
        simulator.scorer = self.trainer.model.score_candidates
        simulator.model_version = f"train-round-{seed}"
        more = batch_from_examples(simulator.examples(count), topics=topics)
        return replace(self, batch=concat([self.batch, more]), trainer=None, report=None)


def examples_for_training(
    settings: Settings,
    world: World,
    topics: TopicLookup,
    *,
    from_kafka: bool,
    file: Path | None,
    simulate: int,
    seed: int,
    rounds: int = 1,
) -> TrainingRun:
    """Examples from exactly one source, as a batch with its provenance.

    Simulated history leaves room for ``rounds`` rounds of ``simulate`` examples (see
    :meth:`TrainingRun.next_round`), so the last round too ends before the world starts.
    """
    if from_kafka:
        topic = settings.topics.examples
        kafka = read_kafka_range(settings.kafka.bootstrap, topic)
        batch = batch_from_examples(kafka.examples, topics=topics)
        return TrainingRun(batch, f"kafka:{topic}", kafka_offsets=kafka.offsets)
    if file is not None:
        return TrainingRun(batch_from_examples(read_examples(file), topics=topics), f"file:{file}")
    config = SimulationConfig(
        seed=seed,
        reward_window_ms=int(settings.time.reward_window.total_seconds() * 1000),
        decision_interval_ms=int(settings.learner.history_decision_interval_s * 1000),
    )
    simulator = ExampleSimulator(
        world, config, start_ms=world.config.start_ms - history_span_ms(config, simulate * rounds)
    )
    batch = batch_from_examples(simulator.examples(simulate), topics=topics)
    return TrainingRun(batch, "simulated", simulator=simulator)


HISTORY_SLACK = 1.25  # decisions with an empty pool pass time without examples


def history_span_ms(config: SimulationConfig, examples: int) -> int:
    """Event time that ``examples`` simulated examples take, with room for the decisions
    that show no slate: simulated logs are the history that ends (about a fifth of the
    span early) before the world starts, where serving takes over."""
    decisions = -(-examples // config.slate_size)
    return int(decisions * config.decision_interval_ms * HISTORY_SLACK)


def publish_run(registry: ModelRegistry, run: TrainingRun, metrics: dict[str, float]) -> str:
    """Publish the run's models with every post it knows embedded and indexed."""
    if run.trainer is None:
        raise ValueError("the run has not been trained")
    catalogue = PostCatalogue()
    if run.simulator is not None:  # embed the whole simulated catalogue, as of its "now"
        store: InMemoryFeatureStore = run.simulator.store
        every_post = np.arange(store.num_posts, dtype=np.int64)
        # Creation times from the world: a post published after "now" has age 0 there,
        # and must not enter the index as created "now" (it would be served early).
        created_ms = np.asarray(run.simulator.world.posts.created_ms, dtype=np.int64)
        posts = store.post_features(every_post, run.simulator.now_ms)
        catalogue.seed(posts, store.post_ids(every_post), created_ms)
    catalogue.update(run.batch.posts, run.batch.decision_time_ms)
    times = run.batch.decision_time_ms
    manifest = publish_version(
        registry,
        run.trainer.model,
        catalogue,
        None,
        training=TrainingData(
            source=run.source,
            examples=len(run.batch),
            start_ms=int(times.min()),
            end_ms=int(times.max()),
            kafka_offsets=run.kafka_offsets,
        ),
        metrics=metrics,
        parent="",
    )
    return manifest.version
