from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from feedrank.models.two_tower import TwoTowerConfig, TwoTowerModel
from tests.unit.models.factories import make_posts, make_user, make_users, with_changes

SMALL = TwoTowerConfig(
    embedding_dim=16,
    user_id_buckets=1024,
    post_id_buckets=1024,
    hidden_sizes=(32,),
    topic_dims=8,
)


@pytest.fixture
def model() -> TwoTowerModel:
    return TwoTowerModel(SMALL)


def test_encodings_are_unit_float32_vectors_of_the_configured_size(model: TwoTowerModel) -> None:
    rng = np.random.default_rng(0)
    users = model.encode_users(make_users(rng, 3))
    posts = model.encode_posts(make_posts(rng, 50))
    assert users.shape == (3, 16)
    assert posts.shape == (50, 16)
    assert users.dtype == posts.dtype == np.float32
    assert np.allclose(np.linalg.norm(posts, axis=1), 1.0, atol=1e-5)
    assert np.allclose(np.linalg.norm(users, axis=1), 1.0, atol=1e-5)


def test_same_seed_same_model_and_another_seed_another() -> None:
    posts = make_posts(np.random.default_rng(0), 20)
    first = TwoTowerModel(SMALL).encode_posts(posts)
    again = TwoTowerModel(SMALL).encode_posts(posts)
    other = TwoTowerModel(replace(SMALL, seed=1)).encode_posts(posts)
    assert np.array_equal(first, again)
    assert not np.allclose(first, other)


def test_encode_posts_batches_give_the_same_vectors() -> None:
    posts = make_posts(np.random.default_rng(0), 100)
    whole = TwoTowerModel(SMALL).encode_posts(posts)
    batched = TwoTowerModel(replace(SMALL, encode_batch_size=7))
    assert np.allclose(whole, batched.encode_posts(posts), atol=1e-6)


def test_cold_users_get_finite_embeddings_that_follow_their_features(
    model: TwoTowerModel,
) -> None:
    rng = np.random.default_rng(0)
    cold = make_user(rng, index=1, known=False)
    different_features = with_changes(cold, language=(cold.language + 1) % 8, activity=0.1)
    another_id_same_features = with_changes(cold, user_id="u999")
    vectors = model.encode_users([cold, different_features, another_id_same_features])
    assert np.isfinite(vectors).all()
    assert not np.allclose(vectors[0], vectors[1])
    # The id embedding is not used for unknown users, so only features matter ...
    assert np.allclose(vectors[0], vectors[2], atol=1e-6)
    # ... while a known user's id does count.
    known = model.encode_users(
        [with_changes(cold, known=True), with_changes(cold, known=True, user_id="u999")]
    )
    assert not np.allclose(known[0], known[1])


def test_cold_posts_get_finite_embeddings_that_follow_their_content(
    model: TwoTowerModel,
) -> None:
    fresh = make_posts(np.random.default_rng(0), 10, fresh=True)
    vectors = model.encode_posts(fresh)
    assert np.isfinite(vectors).all()
    assert np.unique(vectors.round(5), axis=0).shape[0] == 10


def test_forward_gives_one_logit_per_pair_and_trains(model: TwoTowerModel) -> None:
    rng = np.random.default_rng(0)
    users = make_users(rng, 64)
    posts = make_posts(rng, 64)
    # A learnable signal: engagement when the post is in the user's language.
    labels = torch.tensor(
        [float(user.language == post) for user, post in zip(users, posts.language, strict=True)]
    )
    user_tensors, post_tensors = model.user_tensors(users), model.post_tensors(posts)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    model.train()
    for _ in range(60):
        logits = model(user_tensors, post_tensors)
        assert logits.shape == (64,)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
        optimizer.zero_grad()
        torch.autograd.backward(loss)
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_encoding_restores_the_training_flag(model: TwoTowerModel) -> None:
    model.train()
    model.encode_users(make_users(np.random.default_rng(0), 2))
    assert model.training
    model.eval()
    model.encode_posts(make_posts(np.random.default_rng(0), 2))
    assert not model.training


def test_invalid_configs_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        TwoTowerConfig(embedding_dim=0)
    with pytest.raises(ValueError, match="id_dropout"):
        TwoTowerConfig(id_dropout=1.0)
