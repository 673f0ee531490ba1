"""The static-first-layer experiment scores as the ranker does, to float16 rounding."""

from __future__ import annotations

import numpy as np
import torch

from benchmarks.rank_static_layer import StaticFirstLayer
from feedrank.catalogue import CatalogueState
from feedrank.core.settings import load_settings
from feedrank.features.store import InMemoryFeatureStore
from feedrank.models.ranker import RankerConfig, RankerModel
from feedrank.simulate.world import generate_world, world_config
from feedrank.simulate.world.catalogue import catalogue_from_world

NOW_MS = 1_764_000_000_000


def test_precomputed_static_part_gives_the_rankers_scores() -> None:
    settings = load_settings(world={"num_posts": 500, "num_users": 20, "num_creators": 10})
    catalogue: CatalogueState = catalogue_from_world(
        generate_world(world_config(settings.world, NOW_MS))
    )
    store = InMemoryFeatureStore(catalogue)
    model = RankerModel(RankerConfig(seed=1))
    with torch.no_grad():  # every weight non-zero, so every input path shows
        generator = torch.Generator().manual_seed(2)
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    rows = np.arange(store.num_posts, dtype=np.int64)
    static = StaticFirstLayer(model, store, rows, NOW_MS)
    assert static.table_bytes == 500 * RankerConfig().hidden_sizes[0] * 2  # float16
    posts = store.post_features(rows[::5], NOW_MS + 3_600_000)
    user = store.user_features("u3", NOW_MS + 3_600_000)
    similarity = np.linspace(-0.5, 0.9, len(posts), dtype=np.float32)
    expected = model.score_retrieved(user, posts, similarity, NOW_MS + 3_600_000, surface="x")
    served = static.score_retrieved(user, posts, similarity, NOW_MS + 3_600_000, surface="x")
    np.testing.assert_allclose(served, expected, rtol=0.02, atol=1e-3)
