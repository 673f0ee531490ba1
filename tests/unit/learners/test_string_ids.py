"""Posts named by app string ids train, and what a model learns of a post follows its id,
never the row a learner process happened to give it."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from feedrank.core.clock import ManualClock
from feedrank.core.feature_schema import post_index
from feedrank.core.settings import ExploreSettings
from feedrank.explore.model_loader import ModelLoader, check_user_ids
from feedrank.features.store import InMemoryFeatureStore
from feedrank.learners.batch.trainer import BatchTrainer, TrainerConfig
from feedrank.learners.examples import ExampleBatch, batch_from_examples
from feedrank.learners.joint import JointModel, StepConfig
from feedrank.learners.online.learner import OnlineLearner, OnlineLearnerConfig
from feedrank.learners.post_ids import PostIds
from feedrank.learners.posts import PostCatalogue
from feedrank.learners.publishing import publish_version
from feedrank.registry import LocalModelRegistry, TrainingData, read_bundle
from feedrank.simulate.world.catalogue import catalogue_from_world
from feedrank.simulate.world_views import world_catalogue
from feedrank.v1 import events_pb2
from tests.unit.learners.factories import (
    simulated_examples,
    small_ranker,
    small_two_tower,
    tiny_world,
)


def app_examples(count: int) -> list[events_pb2.LabelledExample]:
    """Simulated examples whose posts carry app ids (``article-é-<n>``), not ``p<n>``."""
    examples = [copy.deepcopy(example) for example in simulated_examples(count)[:count]]
    for example in examples:
        example.post_id = f"article-é-{post_index(example.post_id)}"
    return examples


def batches(examples: list[events_pb2.LabelledExample], post_ids: PostIds) -> list[ExampleBatch]:
    size = 200
    made = [
        batch_from_examples(examples[start : start + size], post_ids=post_ids)
        for start in range(0, len(examples), size)
    ]
    for batch in made:  # positives in every batch, as the contract checks do
        batch.labels[: max(4, len(batch) // 10)] = 1.0
    return made


def new_online_learner() -> OnlineLearner:
    config = OnlineLearnerConfig(step=StepConfig(seed=0, frequency_buckets=1024))
    return OnlineLearner.new(config, two_tower=small_two_tower(), ranker=small_ranker())


def test_examples_with_string_ids_train_the_same_whatever_rows_they_get() -> None:
    examples = app_examples(600)
    here = batches(examples, PostIds())
    # Another learner process met other posts first: every post has another row.
    elsewhere = batches(examples, PostIds(f"seen-before-{number}" for number in range(1_000)))
    assert not np.array_equal(here[0].posts.post_index, elsewhere[0].posts.post_index)
    np.testing.assert_array_equal(here[0].posts.post_key, elsewhere[0].posts.post_key)

    first, second = new_online_learner(), new_online_learner()
    losses = [first.learn(batch) for batch in here]
    assert all(np.isfinite(losses))
    for batch in elsewhere:
        second.learn(batch)
    probe_here, probe_elsewhere = here[-1], elsewhere[-1]
    predicted = first.predict_proba(probe_here)
    assert np.isfinite(predicted).all()
    np.testing.assert_array_equal(predicted, second.predict_proba(probe_elsewhere))


def test_a_batch_trained_and_published_model_names_its_posts_by_id(tmp_path: Path) -> None:
    post_ids = PostIds()
    examples = app_examples(600)
    batch = batch_from_examples(examples, post_ids=post_ids)
    batch.labels[::7] = 1.0
    config = TrainerConfig(batch_size=64, max_epochs=1, seed=0, recall_k=5)
    trainer = BatchTrainer(config, two_tower=small_two_tower(), ranker=small_ranker())
    report = trainer.fit(batch)
    assert np.isfinite(report.metrics["log_loss"])

    catalogue = PostCatalogue(post_ids)
    catalogue.update(batch.posts, batch.decision_time_ms)
    registry = LocalModelRegistry(tmp_path / "registry")
    manifest = publish_version(
        registry,
        trainer.model,
        catalogue,
        None,
        training=TrainingData(source="test", examples=len(batch), start_ms=0, end_ms=1),
        metrics=report.metrics,
    )
    bundle = read_bundle(registry.open_verified(manifest.version))
    assert set(bundle.ids()) == {example.post_id for example in examples}
    assert post_ids.ids(bundle.post_index) == list(bundle.ids())


def test_a_server_finds_each_published_post_by_id_whatever_the_learner_rows(
    tmp_path: Path,
) -> None:
    world = tiny_world()
    now_ms = world.config.start_ms
    # This learner process met other posts first: its rows are not the server's.
    post_ids = PostIds(f"met-earlier-{number}" for number in range(37))
    catalogue = world_catalogue(world, now_ms, post_ids)
    model = JointModel.new(small_two_tower(), small_ranker())
    registry = LocalModelRegistry(tmp_path / "registry")
    version = publish_version(
        registry,
        model,
        catalogue,
        None,
        training=TrainingData(source="test", examples=0, start_ms=0, end_ms=1),
        metrics={},
    ).version
    serving = catalogue_from_world(world)  # rows in the world's order
    loader = ModelLoader(
        registry,
        InMemoryFeatureStore(serving),
        serving,
        check_user_ids=check_user_ids(serving, 4),
        settings=ExploreSettings(),
        clock=ManualClock(now_ms),
    )

    served = loader.load(version)

    published = read_bundle(registry.open_verified(version))
    serving_rows = [serving.post_row(post) for post in published.ids()]
    assert None not in serving_rows
    assert serving_rows != published.post_index.tolist()
    np.testing.assert_allclose(
        served.index.vectors(np.array(serving_rows)), published.post_vectors, rtol=1e-6
    )
