"""The post catalogue keeps the latest features; the ANN index updates incrementally."""

from __future__ import annotations

import numpy as np

from feedrank.core.models.two_tower import TwoTowerModel
from feedrank.learners.posts import EmbeddingIndex, PostCatalogue
from tests.unit.learners.factories import simulated_batches, small_two_tower


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
