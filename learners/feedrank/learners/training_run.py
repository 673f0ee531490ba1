"""One ``feedrank train`` run: its examples, provenance, trained models and publication."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from feedrank.core.registry import ModelRegistry, TrainingData
from feedrank.core.settings import Settings
from feedrank.learners.batch.trainer import BatchTrainer, TrainingReport
from feedrank.learners.examples import ExampleBatch, batch_from_examples
from feedrank.learners.post_topics import TopicLookup
from feedrank.learners.posts import PostCatalogue
from feedrank.learners.publishing import publish_version
from feedrank.learners.sources import read_examples, read_kafka_range


@dataclass(frozen=True)
class TrainingRun:
    """Examples and where they came from; after :meth:`trained`, the trained models.

    ``catalogue`` holds posts to embed and index in the published version beside those
    the examples saw (the catalogue as it stands), or None for the examples' posts only.
    """

    batch: ExampleBatch
    source: str
    kafka_offsets: dict[str, int] = field(default_factory=dict)
    catalogue: PostCatalogue | None = None
    trainer: BatchTrainer | None = None
    report: TrainingReport | None = None

    def trained(self, trainer: BatchTrainer, report: TrainingReport) -> TrainingRun:
        return replace(self, trainer=trainer, report=report)


def logged_examples(
    settings: Settings,
    topics: TopicLookup | None,
    *,
    from_kafka: bool,
    file: Path | None,
    catalogue: PostCatalogue | None = None,
) -> TrainingRun:
    """Labelled examples from ``topics.examples`` (its start to its end offsets) or from
    an exported file, as a batch with its provenance; ``topics`` fills in the post topics
    that older logs do not carry."""
    if from_kafka:
        topic = settings.topics.examples
        kafka = read_kafka_range(settings.kafka.bootstrap, topic)
        batch = batch_from_examples(kafka.examples, topics=topics)
        return TrainingRun(batch, f"kafka:{topic}", kafka.offsets, catalogue)
    if file is None:
        raise ValueError("give from_kafka or a file")
    batch = batch_from_examples(read_examples(file), topics=topics)
    return TrainingRun(batch, f"file:{file}", catalogue=catalogue)


def publish_run(registry: ModelRegistry, run: TrainingRun, metrics: dict[str, float]) -> str:
    """Publish the run's models with every post it knows embedded and indexed."""
    if run.trainer is None:
        raise ValueError("the run has not been trained")
    catalogue = run.catalogue if run.catalogue is not None else PostCatalogue()
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
