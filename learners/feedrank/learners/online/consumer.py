"""The online learning loop: ``feedrank.examples`` in, models and registry versions out.

With a decisions topic configured it also reads ``feedrank.decisions`` and learns every
shown item as a negative at impression and the join's positives as they come (fake
negatives, see :mod:`feedrank.learners.online.feedback`); both topics' offsets are in
the checkpoint. Compact decisions and examples get their post features re-joined from
the learner's catalogue (``rejoin``); what it cannot re-join is skipped and counted.

Per micro-batch: consume (read committed), decode through the codec, apply one update
whose forward pass also scores the batch for the streaming metrics (before learning
from it), and account for the examples (next offset per partition, count, key digest).
Every N examples or T seconds the learner, its stream position and its post catalogue
are checkpointed atomically (:mod:`feedrank.learners.online.checkpoint`), and **only
then** are the offsets committed to Kafka. On start the learner resumes from its
checkpoint and seeks to the checkpoint's offsets, so a crash at any point neither loses
an example nor applies one twice: work after the last checkpoint is simply redone.
Committed group offsets are for lag monitoring; the checkpoint is the source of truth.

A broker outage stops nothing: the readers (:mod:`feedrank.learners.online.readers`)
wait, retry with backoff and commit again once Kafka answers, while
``feedrank_learner_kafka_up`` reads 0; checkpoints and publishing go on locally, and
time without Kafka does not count as an idle stream.

Every ``publish_every_examples`` examples or ``publish_every_s`` seconds a registry
version is published with the models, the refreshed post embeddings and ANN index, and
the Kafka offsets the version has learned up to; a checkpoint follows at once, so the
version is durably recorded as the next one's parent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from confluent_kafka import KafkaError, Message

from feedrank.catalogue import CatalogueState
from feedrank.core import codecs
from feedrank.core.kafka_clients import KafkaTarget
from feedrank.core.kafka_link import BrokerLink
from feedrank.learners.examples import (
    ExampleBatch,
    InvalidExampleError,
    LoggedExample,
    batch_from_examples,
)
from feedrank.learners.feature_rejoin import PostFeatureRejoin
from feedrank.learners.online import metrics
from feedrank.learners.online.checkpoint import CheckpointStore, StreamProgress
from feedrank.learners.online.feedback import Feedback, fake_negatives, learns_from
from feedrank.learners.online.learner import OnlineLearner
from feedrank.learners.online.monitoring import StreamMonitor
from feedrank.learners.online.publish_gate import PublishGate
from feedrank.learners.online.readers import TopicReaders
from feedrank.learners.post_topics import TopicLookup
from feedrank.learners.posts import EmbeddingIndex, PostCatalogue
from feedrank.learners.publishing import publish_version
from feedrank.registry import ModelBundle, ModelRegistry, TrainingData
from feedrank.v1 import events_pb2

log = logging.getLogger("feedrank.learners")


@dataclass(frozen=True)
class ConsumerConfig:
    """Where the learner reads, keeps state, and how often it checkpoints and publishes."""

    bootstrap: KafkaTarget  # a bootstrap string (plaintext), or one with its security
    topic: str
    group_id: str
    state_dir: Path
    # With a decisions topic the learner learns fake negatives from it (see feedback.py);
    # without one it learns the join's complete labels.
    decisions_topic: str | None = None
    micro_batch_size: int = 512
    poll_timeout_s: float = 0.5
    checkpoint_every_examples: int = 50_000
    checkpoint_every_s: float = 30.0
    publish_every_examples: int = 200_000
    publish_every_s: float = 300.0
    idle_exit_s: float | None = None  # stop after this long without a new example


class OnlineConsumer:
    """Runs the loop until ``stop`` is set (or the stream stays idle for idle_exit_s)."""

    def __init__(
        self,
        config: ConsumerConfig,
        *,
        make_learner: Callable[[], tuple[OnlineLearner, str]],
        registry: ModelRegistry | None,
        topics: TopicLookup | None = None,
        monitor: StreamMonitor | None = None,
        initial_catalogue: PostCatalogue | None = None,
        rejoin: PostFeatureRejoin | None = None,
        link: BrokerLink | None = None,
        judge: Callable[[ModelBundle], Mapping[str, float]] | None = None,
        gate: PublishGate | None = None,
    ) -> None:
        """``judge``: the off-policy estimate of each version before it is published
        (:class:`~feedrank.learners.evaluation.version_judge.CounterfactualJudge`);
        ``gate``: the verdict on its rolling AUC and calibration, recorded with it."""
        self.config = config
        self.judge = judge
        self.gate = gate or PublishGate()
        self.link = link or BrokerLink("the online learner", on_change=metrics.KAFKA_UP.set)
        self.registry = registry
        self.topics = topics
        self.rejoin = rejoin or PostFeatureRejoin(
            CatalogueState(), on_skip=metrics.count_rejoin_skip
        )
        self.monitor = monitor or StreamMonitor()
        self.store = CheckpointStore(config.state_dir)
        checkpoint = self.store.load()
        if checkpoint is None:
            self.learner, parent = make_learner()  # parent: the version it started from
            self.progress = StreamProgress(last_version=parent)
            self.catalogue = initial_catalogue or PostCatalogue()
        else:
            self.learner, self.progress = checkpoint.learner, checkpoint.progress
            self.catalogue = checkpoint.posts
            log.info("resuming from checkpoint at %s", self.progress.offsets)
        dim = self.learner.model.two_tower.config.embedding_dim
        self.embeddings = EmbeddingIndex(dim)
        self._checkpointed_examples = self.progress.examples_applied
        self._checkpointed_offsets = dict(self.progress.offsets)
        self._published_examples = self.progress.examples_applied
        self._last_checkpoint = time.monotonic()
        self._last_publish = time.monotonic()

    def run(self, stop: threading.Event) -> StreamProgress:
        readers = self._readers()
        try:
            if not readers.assign(self.progress.offsets, stop):
                return self.progress  # stopped while waiting for Kafka: nothing was read
            if self.registry is not None and self.registry.latest() is None:
                # The first version is the model the learner starts from, so a rollout
                # always compares what it learned with what served before.
                self.publish()
            last_example = time.monotonic()
            idle_exit = self.config.idle_exit_s
            while not stop.is_set():
                messages = readers.poll()
                if messages:
                    self.apply(messages)
                if messages or not self.link.up:  # an outage is not an idle stream
                    last_example = time.monotonic()
                elif idle_exit is not None and time.monotonic() - last_example > idle_exit:
                    break
                self._maybe_checkpoint_and_publish(readers)
            if self.progress.examples_applied > self._published_examples:
                self.publish()
            self._checkpoint(readers, force=True)
        finally:
            readers.close()
        return self.progress

    def _readers(self) -> TopicReaders:
        config = self.config
        return TopicReaders(
            bootstrap=config.bootstrap,
            group_id=config.group_id,
            topics=self.topics_read,
            decisions_topic=config.decisions_topic,
            micro_batch_size=config.micro_batch_size,
            poll_timeout_s=config.poll_timeout_s,
            link=self.link,
        )

    # One micro-batch ------------------------------------------------------------------
    def apply(self, messages: list[Message]) -> int:
        """Learn from these records; returns how many examples were applied."""
        started = time.perf_counter()
        examples: list[LoggedExample] = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("consume error on %s: %s", message.topic(), error)
                continue
            topic = message.topic()
            key = f"{topic}:{message.partition()}"
            self.progress.offsets[key] = max(
                self.progress.offsets.get(key, 0), int(message.offset() or 0) + 1
            )
            try:
                examples.extend(self._examples_of(topic, message.value()))
            except codecs.EventDecodeError as decode_error:
                metrics.REJECTED.inc()
                log.warning("skipping an undecodable record of %s: %s", topic, decode_error)
        batch = self._batch(examples)
        if batch is None:
            return 0
        loss, probabilities = self.learner.learn_scored(batch)  # scored before it learns
        for event in self.monitor.update(batch.labels, probabilities):
            metrics.DRIFT_EVENTS.inc()
            log.warning("drift in the loss after %d examples (mean %.4f)", *event.__dict__.values())
        times = batch.decision_time_ms
        self.progress.record(batch.keys, int(times.min()), int(times.max()))
        self.catalogue.update(batch.posts, times)
        self._export(loss, len(batch), started)
        return len(batch)

    @property
    def feedback(self) -> Feedback:
        if self.config.decisions_topic is None:
            return Feedback.COMPLETE
        return Feedback.FAKE_NEGATIVES

    @property
    def topics_read(self) -> list[str]:
        decisions = self.config.decisions_topic
        return [self.config.topic] + ([decisions] if decisions is not None else [])

    def _examples_of(self, topic: str | None, value: bytes | None) -> Sequence[LoggedExample]:
        """The training examples one record stands for (none for a skipped one)."""
        if topic is not None and topic == self.config.decisions_topic:
            return fake_negatives(codecs.decode(events_pb2.Decision, value), self.rejoin)
        example = codecs.decode(events_pb2.LabelledExample, value)
        learned = learns_from(example, self.feedback) and self.rejoin.complete(example)
        return [example] if learned else []

    def _batch(self, examples: list[LoggedExample]) -> ExampleBatch | None:
        if not examples:
            return None
        try:
            return batch_from_examples(examples, topics=self.topics)
        except InvalidExampleError:
            pass
        good = []
        for example in examples:  # the slow path: find the bad ones
            try:
                batch_from_examples([example], topics=self.topics)
            except InvalidExampleError as error:
                metrics.REJECTED.inc()
                log.warning("skipping example %s: %s", example.decision_id, error)
            else:
                good.append(example)
        return batch_from_examples(good, topics=self.topics) if good else None

    # Durability and publishing --------------------------------------------------------
    def _maybe_checkpoint_and_publish(self, readers: TopicReaders) -> None:
        config, now = self.config, time.monotonic()
        applied = self.progress.examples_applied
        publish_due = applied > self._published_examples and (
            applied - self._published_examples >= config.publish_every_examples
            or now - self._last_publish >= config.publish_every_s
        )
        moved = applied > self._checkpointed_examples or (
            self.progress.offsets != self._checkpointed_offsets
        )
        checkpoint_due = moved and (
            applied - self._checkpointed_examples >= config.checkpoint_every_examples
            or now - self._last_checkpoint >= config.checkpoint_every_s
        )
        if publish_due:
            self.publish()  # the checkpoint below then records the version as the parent
        if checkpoint_due or publish_due:
            self._checkpoint(readers)

    def _checkpoint(self, readers: TopicReaders, *, force: bool = False) -> None:
        """Make the state durable, THEN commit the offsets it includes."""
        unchanged = self.progress.offsets == self._checkpointed_offsets
        if (
            not force
            and unchanged
            and self.progress.examples_applied == self._checkpointed_examples
        ):
            return
        started = time.perf_counter()
        self.store.save(self.learner, self.progress, self.catalogue)
        readers.commit(self.progress.offsets)
        self._checkpointed_examples = self.progress.examples_applied
        self._checkpointed_offsets = dict(self.progress.offsets)
        self._last_checkpoint = time.monotonic()
        metrics.CHECKPOINTS.inc()
        metrics.CHECKPOINT_SECONDS.observe(time.perf_counter() - started)

    def publish(self) -> str:
        """Publish the current models as a registry version; its name ('' without one)."""
        self._last_publish = time.monotonic()
        if self.registry is None:
            return ""
        progress = self.progress
        snapshot = self.monitor.snapshot()
        outcome = self.gate.judge(snapshot)
        metrics.PUBLISH_GATE.labels(verdict=outcome.verdict).inc()
        if outcome.verdict == "failed":
            log.warning("the new version fails the publish gate: %s", outcome.reason)
        manifest = publish_version(
            self.registry,
            self.learner.model,
            self.catalogue,
            self.embeddings,
            training=TrainingData(
                source="kafka:" + "+".join(self.topics_read),
                examples=progress.examples_applied,
                start_ms=progress.first_decision_ms,
                end_ms=max(progress.last_decision_ms, progress.first_decision_ms),
                kafka_offsets=dict(progress.offsets),
            ),
            metrics={
                **snapshot,
                **outcome.metrics,
                "examples": float(progress.examples_applied),
            },
            parent=progress.last_version,
            judge=self.judge,
        )
        progress.last_version = manifest.version
        self._published_examples = progress.examples_applied
        metrics.VERSIONS.inc()
        metrics.LAST_PUBLISH.set_to_current_time()
        log.info("published %s at offsets %s", manifest.version, progress.offsets)
        return manifest.version

    def _export(self, loss: float, count: int, started: float) -> None:
        metrics.EXAMPLES.inc(count)
        metrics.LOSS.set(loss)
        snapshot = self.monitor.snapshot()
        for gauge, name in (
            (metrics.ROLLING_AUC, "rolling_auc"),
            (metrics.ROLLING_LOG_LOSS, "rolling_log_loss"),
            (metrics.CALIBRATION, "calibration"),
        ):
            if np.isfinite(snapshot[name]):
                gauge.set(snapshot[name])
        metrics.UPDATE_SECONDS.observe(time.perf_counter() - started)
