"""The packed user tower computes what the user tower computes, on every input path."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import pytest
import torch
from torch import nn

from feedrank.core.feature_schema import NUM_TOPICS
from feedrank.models.packed_towers import PackedTowers
from feedrank.models.two_tower import TwoTowerConfig, TwoTowerModel
from tests.unit.models.factories import make_posts, make_user, with_changes

Model = TypeVar("Model", bound=nn.Module)


def randomised(model: Model) -> Model:
    """``model`` with every weight random and non-zero, so each input path shows."""
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    return model.eval()


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
    # With and without history and a known id (the id embedding and the topic part off).
    for case in (user, with_changes(user, topic_affinity=(), known=False)):
        np.testing.assert_allclose(
            towers.encode_users([case]), model.encode_users([case]), rtol=1e-5, atol=1e-6
        )
    several = [make_user(rng, index=index) for index in range(3)]
    np.testing.assert_array_equal(towers.encode_users(several), model.encode_users(several))
    posts = make_posts(rng, 5)
    np.testing.assert_array_equal(towers.encode_posts(posts), model.encode_posts(posts))
