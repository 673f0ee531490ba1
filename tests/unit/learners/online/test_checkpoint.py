"""Checkpoints are atomic and restore the learner, its position and its posts exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from feedrank.learners.joint import StepConfig
from feedrank.learners.online.checkpoint import CheckpointStore, StreamProgress, key_digest
from feedrank.learners.online.learner import OnlineLearner, OnlineLearnerConfig
from feedrank.learners.posts import PostCatalogue
from tests.unit.learners.factories import simulated_batches, small_ranker, small_two_tower


def make_learner() -> OnlineLearner:
    config = OnlineLearnerConfig(step=StepConfig(frequency_buckets=1024))
    return OnlineLearner.new(config, two_tower=small_two_tower(), ranker=small_ranker())


def test_save_then_load_restores_everything(tmp_path: Path) -> None:
    batches = simulated_batches()
    learner = make_learner()
    learner.learn(batches[0])
    progress = StreamProgress(offsets={"t:0": 200})
    progress.record(batches[0].keys, 1, 2)
    posts = PostCatalogue()
    posts.update(batches[0].posts, batches[0].decision_time_ms)
    store = CheckpointStore(tmp_path)
    store.save(learner, progress, posts)
    store.save(learner, progress, posts)  # the second replaces the first

    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["ckpt-00000002"]
    loaded = store.load()
    assert loaded is not None
    assert loaded.progress == progress
    assert loaded.learner.examples_learned == 200
    np.testing.assert_array_equal(
        loaded.learner.predict_proba(batches[1]), learner.predict_proba(batches[1])
    )
    np.testing.assert_array_equal(loaded.posts.features().post_index, posts.features().post_index)
    assert loaded.posts.ids() == posts.ids()  # the ids travel with the features
    np.testing.assert_array_equal(loaded.posts.features().post_key, posts.features().post_key)
    np.testing.assert_array_equal(loaded.posts.created_ms, posts.created_ms)


def test_a_half_written_checkpoint_is_ignored(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    assert store.load() is None
    store.save(make_learner(), StreamProgress(examples_applied=5), PostCatalogue())
    (tmp_path / "checkpoints" / "ckpt-00000002").mkdir()  # a crash mid-write
    progress = store.progress()
    assert progress is not None
    assert progress.examples_applied == 5


def test_the_key_digest_is_order_free_and_sees_duplicates() -> None:
    assert key_digest(["a", "b"]) == key_digest(["b", "a"])
    assert key_digest(["a", "b", "b"]) != key_digest(["a", "b"])
