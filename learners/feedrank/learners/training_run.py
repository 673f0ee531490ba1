"""One ``feedrank train`` run: its examples, provenance, trained models and publication."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from feedrank.catalogue import CatalogueState
from feedrank.core.settings import Settings
from feedrank.learners.batch.trainer import BatchTrainer, TrainingReport
from feedrank.learners.bootstrap import catalogue_posts
from feedrank.learners.examples import ExampleBatch, batch_from_examples
from feedrank.learners.feature_backfill import FeatureBackfill
from feedrank.learners.post_topics import CatalogueTopics
from feedrank.learners.posts import PostCatalogue
from feedrank.learners.publishing import publish_version
from feedrank.learners.sources import WHOLE, Share, read_examples, read_kafka_range
from feedrank.registry import ModelRegistry, TrainingData


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
    backfilled: tuple[int, int] = (0, 0)  # examples whose user, post features were filled
    not_rejoined: str = ""  # compact examples left out: their post version was not found
    examples_read: int | None = None  # every process's examples; None: len(batch)

    @property
    def example_count(self) -> int:
        return len(self.batch) if self.examples_read is None else self.examples_read

    def trained(self, trainer: BatchTrainer, report: TrainingReport) -> TrainingRun:
        return replace(self, trainer=trainer, report=report)


def logged_examples(
    settings: Settings,
    *,
    from_kafka: bool,
    file: Path | None,
    catalogue: CatalogueState | None = None,
    now_ms: int = 0,
    share: Share = WHOLE,
    since_ms: int | None = None,
) -> TrainingRun:
    """Labelled examples from ``topics.examples`` (its start to its end offsets) or from
    an exported file, as a batch with its provenance.

    ``catalogue`` (the replayed entity topics) fills in what the logs lack: post topics
    older logs do not carry, and whole feature vectors imported logs do not carry
    (:class:`FeatureBackfill`), and the post features of compact examples at the version
    their ranker saw (those it lacks are left out: ``not_rejoined``); its live posts, as
    of ``now_ms``, are indexed in the published version beside the examples' own.
    ``share``: this process's partitions or rows only (data-parallel training).
    ``since_ms``: only the examples Kafka received since then (a file's: decided since).
    """
    backfill = FeatureBackfill(catalogue)
    topics = CatalogueTopics(catalogue) if catalogue is not None else None
    posts = catalogue_posts(catalogue, now_ms) if catalogue is not None else None
    if from_kafka:
        topic = settings.topics.examples
        kafka = read_kafka_range(settings.kafka.access, topic, share=share, since_ms=since_ms)
        examples = list(backfill.examples(kafka.examples))
        batch = batch_from_examples(examples, topics=topics)
        run = TrainingRun(batch, f"kafka:{topic}", kafka.offsets, posts)
    elif file is not None:
        read = read_examples(file, share)
        recent = [e for e in read if since_ms is None or e.decision_time_ms >= since_ms]
        examples = list(backfill.examples(recent))
        run = TrainingRun(
            batch_from_examples(examples, topics=topics), f"file:{file}", catalogue=posts
        )
    else:
        raise ValueError("give from_kafka or a file")
    skipped = backfill.rejoin.skip_summary() if backfill.rejoin.skipped else ""
    return replace(
        run, backfilled=(backfill.filled_users, backfill.filled_posts), not_rejoined=skipped
    )


def publish_run(
    registry: ModelRegistry, run: TrainingRun, metrics: dict[str, float], *, parent: str = ""
) -> str:
    """Publish the run's models with every post it knows embedded and indexed
    (``parent``: the version a warm start continued)."""
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
            examples=run.example_count,
            start_ms=int(times.min()),
            end_ms=int(times.max()),
            kafka_offsets=run.kafka_offsets,
        ),
        metrics=metrics,
        parent=parent,
    )
    return manifest.version
