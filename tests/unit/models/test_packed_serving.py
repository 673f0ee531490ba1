"""The packed serving forms compute what the models compute, on every input path."""

from __future__ import annotations

import dataclasses
from typing import TypeVar

import numpy as np
import pytest
import torch
from torch import nn

from feedrank.core.feature_schema import COUNTRIES, LANGUAGES, NUM_TOPICS
from feedrank.models.packed_ranker import PackedRanker
from feedrank.models.packed_towers import PackedTowers
from feedrank.models.ranker import RankerConfig, RankerModel
from feedrank.models.two_tower import TwoTowerConfig, TwoTowerModel
from tests.unit.models.factories import AS_OF_MS, make_posts, make_user, with_changes
from tests.unit.models.test_ranker import unit_vectors

REQUEST_MS = AS_OF_MS + 5 * 3_600_000


Model = TypeVar("Model", bound=nn.Module)


def randomised(model: Model) -> Model:
    """``model`` with every weight random and non-zero (a fresh ranker's topic cross
    and position bias start at zero), so each input path shows in the outputs."""
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    return model.eval()


@pytest.mark.parametrize("time_context", [True, False])
def test_packed_scores_equal_the_models_on_every_input_path(time_context: bool) -> None:
    config = RankerConfig(
        tower_dim=16,
        user_id_buckets=1024,
        post_id_buckets=1024,
        hidden_sizes=(32, 16, 8),
        time_context=time_context,
    )
    model = randomised(RankerModel(config))
    packed = PackedRanker(model)
    rng = np.random.default_rng(3)
    posts = make_posts(rng, 200)
    # Half the posts never shown (no id embedding); some past the schema's languages and
    # countries (the "other" rows).
    posts = dataclasses.replace(
        posts,
        impressions=np.where(np.arange(200) % 2 == 0, posts.impressions, 0.0).astype(np.float32),
        language=np.where(np.arange(200) % 7 == 0, len(LANGUAGES) + 3, posts.language),
        country=np.where(np.arange(200) % 5 == 0, len(COUNTRIES) + 1, posts.country),
    )
    user_vector, post_vectors = unit_vectors(rng, 1, 16)[0], unit_vectors(rng, 200, 16)
    user = make_user(rng)
    for case in (user, with_changes(user, topic_affinity=(), known=False)):
        for surface in ("", "explore", "reels"):
            expected = model.score(
                case, posts, user_vector, post_vectors, REQUEST_MS, surface=surface
            )
            similarity = post_vectors @ user_vector
            served = packed.score(case, posts, similarity, REQUEST_MS, surface=surface)
            np.testing.assert_allclose(served, expected, rtol=2e-5, atol=1e-7)


def test_one_similarity_per_post_is_required() -> None:
    packed = PackedRanker(
        RankerModel(RankerConfig(tower_dim=16, user_id_buckets=64, post_id_buckets=64))
    )
    rng = np.random.default_rng(4)
    with pytest.raises(ValueError, match="tower_similarity has shape"):
        packed.score(make_user(rng), make_posts(rng, 4), np.zeros(5, dtype=np.float32), 0)


@pytest.mark.parametrize("topic_dims", [NUM_TOPICS, 8, 0])
def test_packed_user_vectors_equal_the_user_towers(topic_dims: int) -> None:
    config = TwoTowerConfig(
        embedding_dim=16 + topic_dims,
        user_id_buckets=1024,
        post_id_buckets=1024,
        hidden_sizes=(32, 24),
        topic_dims=topic_dims,
    )
    model = randomised(TwoTowerModel(config))
    towers = PackedTowers(model)
    rng = np.random.default_rng(6)
    user = make_user(rng)
    for case in (user, with_changes(user, topic_affinity=(), known=False)):
        np.testing.assert_allclose(
            towers.encode_users([case]), model.encode_users([case]), rtol=1e-5, atol=1e-6
        )
    several = [make_user(rng, index=index) for index in range(3)]
    np.testing.assert_array_equal(towers.encode_users(several), model.encode_users(several))
    posts = make_posts(rng, 5)
    np.testing.assert_array_equal(towers.encode_posts(posts), model.encode_posts(posts))
