"""The post catalogue keeps the latest features; the ANN index updates incrementally."""

from __future__ import annotations

import numpy as np

from feedrank.core.models.two_tower import TwoTowerModel
from feedrank.core.world import WorldConfig, generate_world
from feedrank.learners.bootstrap import world_catalogue
from feedrank.learners.posts import EmbeddingIndex, PostCatalogue
from tests.unit.learners.factories import simulated_batches, small_two_tower

START_MS = 1_764_000_000_000


def test_latest_features_win_and_indexing_is_incremental() -> None:
    batches = simulated_batches()
    catalogue = PostCatalogue()
    catalogue.update(batches[0].posts, batches[0].decision_time_ms)
    catalogue.update(batches[1].posts, batches[1].decision_time_ms)
    known = np.unique(np.concatenate([b.posts.post_index for b in batches[:2]]))
    assert len(catalogue) == known.size
    last = batches[1].posts
    row = int(np.flatnonzero(last.post_index == last.post_index[-1])[-1])
    features = catalogue.features()
    slot = int(np.flatnonzero(features.post_index == last.post_index[-1])[0])
    assert features.impressions[slot] == last.impressions[row]

    tower = TwoTowerModel(small_two_tower())
    index = EmbeddingIndex(tower.config.embedding_dim)
    first = index.refresh(tower, catalogue)
    assert first.changed == len(catalogue)
    assert len(index.index) == len(catalogue)
    assert index.refresh(tower, catalogue).changed == 0  # nothing moved, nothing re-added


def test_a_catalogue_seeded_from_the_world_holds_every_post_with_its_creation_time() -> None:
    world = generate_world(
        WorldConfig(num_users=50, num_creators=20, num_posts=500, seed=3, start_ms=START_MS)
    )
    catalogue = world_catalogue(world, START_MS)

    assert len(catalogue) == world.num_posts
    np.testing.assert_array_equal(catalogue.features().post_index, np.arange(world.num_posts))
    np.testing.assert_array_equal(catalogue.created_ms, world.posts.created_ms)
