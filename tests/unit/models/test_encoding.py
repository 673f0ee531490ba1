from __future__ import annotations

import dataclasses

import numpy as np
import torch

from feedrank.core.feature_schema import CONTENT_DIM, NUM_TOPICS, post_keys
from feedrank.models.encoding import (
    AGE_COLUMNS,
    CONTEXT_NUMERIC_COLUMNS,
    POST_NUMERIC_COLUMNS,
    USER_NUMERIC_COLUMNS,
    IdEmbedding,
    context_tensors,
    hash_indices,
    hash_strings,
    post_tensors,
    user_tensors,
)
from tests.unit.models.factories import (
    AS_OF_MS,
    make_posts,
    make_user,
    make_users,
    with_changes,
)


def test_hashes_are_stable_golden_values() -> None:
    # blake2b and splitmix64 do not depend on PYTHONHASHSEED or the process: a model
    # trained anywhere finds the same buckets everywhere. These values must never change.
    assert hash_strings(["u1", "u2", "user-42"], 1 << 18).tolist() == [104850, 170874, 172143]
    assert hash_indices(np.array([0, 1, 999_999]), 1 << 19).tolist() == [380335, 154817, 34797]


def test_string_hash_is_deterministic_and_in_range() -> None:
    buckets = hash_strings([f"u{i}" for i in range(500)] + ["u0"], 64)
    assert buckets.dtype == np.int64
    assert buckets[0] == buckets[-1]
    assert buckets.min() >= 0
    assert buckets.max() < 64


def test_index_hash_is_vectorised_deterministic_and_spread() -> None:
    indices = np.arange(100_000, dtype=np.int64)
    buckets = hash_indices(indices, 1 << 16)
    assert buckets.dtype == np.int64
    assert buckets.min() >= 0
    assert buckets.max() < 1 << 16
    assert np.array_equal(buckets, hash_indices(indices, 1 << 16))
    # Neighbouring ids land far apart and fill the table about as a random map would.
    assert np.unique(buckets).size > 0.7 * (1 << 16)
    assert buckets[0] != buckets[1]


def test_user_tensors_shapes_and_dtypes() -> None:
    users = make_users(np.random.default_rng(0), 5)
    tensors = user_tensors(users, id_buckets=128)
    assert len(tensors) == 5
    assert tensors.numeric.shape == (5, len(USER_NUMERIC_COLUMNS))
    assert tensors.numeric.dtype == torch.float32
    for column in (tensors.id_bucket, tensors.language, tensors.country, tensors.age_bucket):
        assert column.dtype == torch.int64
        assert column.shape == (5,)
    assert tensors.known.dtype == torch.bool
    assert int(tensors.id_bucket.max()) < 128


def test_post_tensors_shapes_known_flag_and_age_at_request_time() -> None:
    posts = make_posts(np.random.default_rng(0), 6)
    fresh = make_posts(np.random.default_rng(1), 4, fresh=True)
    tensors = post_tensors(posts, id_buckets=64)
    assert tensors.topics.shape == (6, NUM_TOPICS)
    assert tensors.content.shape == (6, CONTENT_DIM)
    assert tensors.numeric.shape == (6, len(POST_NUMERIC_COLUMNS))
    assert tensors.age.shape == (6, AGE_COLUMNS)
    assert bool(tensors.known.all())
    assert not bool(post_tensors(fresh, id_buckets=64).known.any())
    later = post_tensors(posts, id_buckets=64, at_ms=AS_OF_MS + 24 * 3_600_000)
    assert bool((later.age > tensors.age).all())
    assert len(tensors.rows(2, 5)) == 3


def test_the_post_id_bucket_follows_the_stable_key_not_the_catalogue_row() -> None:
    posts = make_posts(np.random.default_rng(0), 3)
    ids = ["article-é-42", "p1", "x" * 256]
    keyed = dataclasses.replace(posts, post_key=post_keys(ids))
    # Another process interned the same ids in another order: other rows, same keys.
    elsewhere = dataclasses.replace(keyed, post_index=np.array([917, 3, 55], dtype=np.int64))
    buckets = post_tensors(keyed, id_buckets=1 << 19).id_bucket
    assert torch.equal(buckets, post_tensors(elsewhere, id_buckets=1 << 19).id_bucket)
    assert buckets.tolist() == hash_indices(post_keys(ids), 1 << 19).tolist()
    assert buckets.tolist()[0] == 398237  # golden: must never change
    relabelled = dataclasses.replace(keyed, post_key=post_keys(["other", "p1", "x" * 256]))
    changed = post_tensors(relabelled, id_buckets=1 << 19).id_bucket
    assert changed.tolist()[1:] == buckets.tolist()[1:]
    assert changed.tolist()[0] != buckets.tolist()[0]


def test_post_age_is_given_on_a_log_and_a_linear_scale() -> None:
    posts = dataclasses.replace(
        make_posts(np.random.default_rng(0), 3),
        age_hours=np.array([0.0, 24.0, 168.0], dtype=np.float32),
    )
    age = post_tensors(posts, id_buckets=64).age
    assert torch.allclose(age[:, 0], torch.log1p(torch.tensor([0.0, 24.0, 168.0])) / 5.0)
    assert torch.allclose(age[:, 1], torch.tensor([0.0, 24.0 / 168.0, 1.0]))


def test_engagement_rates_go_in_as_logs_centred_on_a_typical_rate() -> None:
    posts = dataclasses.replace(
        make_posts(np.random.default_rng(0), 3),
        creator_engagement_rate=np.array([0.05, 0.1, 0.0], dtype=np.float32),
        engagement_rate=np.array([0.05, 0.025, 1.0], dtype=np.float32),
    )
    numeric = post_tensors(posts, id_buckets=64).numeric
    creator = numeric[:, POST_NUMERIC_COLUMNS.index("creator_engagement_rate")]
    own = numeric[:, POST_NUMERIC_COLUMNS.index("engagement_rate")]
    assert abs(float(creator[0])) < 0.01  # log(0.05) + 3 is about 0
    assert torch.allclose(creator[1] - creator[0], torch.tensor(np.log(2.0), dtype=torch.float32))
    assert bool(torch.isfinite(creator).all())  # a zero rate is floored, not -inf
    assert torch.allclose(own[0] - own[1], torch.tensor(np.log(2.0), dtype=torch.float32))


def test_topic_affinity_goes_in_as_square_roots_of_the_shares() -> None:
    shares = (0.64, 0.36) + (0.0,) * (NUM_TOPICS - 2)
    user = with_changes(
        make_user(np.random.default_rng(0)), topic_affinity=shares, affinity_engagements=2.0
    )
    tensors = user_tensors([user], id_buckets=64)
    assert torch.allclose(tensors.topic_affinity[0, :2], torch.tensor([0.8, 0.6]))
    assert abs(float(tensors.topic_affinity[0].norm()) - 1.0) < 1e-6  # a unit vector
    evidence = tensors.numeric[0, USER_NUMERIC_COLUMNS.index("affinity_engagements")]
    assert abs(float(evidence) - 2.0 / 10.0) < 1e-6  # a log count, scaled like the others


def test_context_tensors_encode_hour_and_weekday_on_a_circle() -> None:
    midnight_thursday = 0  # 1970-01-01T00:00Z
    six_am = 6 * 3_600_000
    context = context_tensors([midnight_thursday, six_am], ["home", "explore"], surface_buckets=8)
    assert context.numeric.shape == (2, len(CONTEXT_NUMERIC_COLUMNS))
    hour_sin, hour_cos = context.numeric[:, 0], context.numeric[:, 1]
    assert torch.allclose(hour_sin, torch.tensor([0.0, 1.0]), atol=1e-6)
    assert torch.allclose(hour_cos, torch.tensor([1.0, 0.0]), atol=1e-6)
    assert torch.equal(context.numeric[0, 2:], context.numeric[1, 2:])  # same weekday
    assert int(context.surface_bucket.max()) < 8


def test_id_embedding_is_zero_for_unknown_rows_and_dropped_only_in_training() -> None:
    embedding = IdEmbedding(buckets=16, dim=4, dropout=0.5)
    buckets = torch.arange(8)
    known = torch.tensor([True] * 4 + [False] * 4)
    embedding.eval()
    output = embedding(buckets, known)
    assert output.shape == (8, 5)
    assert torch.equal(output[4:], torch.zeros(4, 5))
    assert torch.equal(output[:4, -1], torch.ones(4))
    assert bool((output[:4, :4] != 0).all())
    embedding.train()
    torch.manual_seed(0)
    with torch.no_grad():
        kept = torch.stack([embedding(buckets, known)[:4, -1] for _ in range(200)])
    assert 0.35 < float(kept.mean()) < 0.65


def test_shared_user_rows_encode_like_distinct_copies() -> None:
    rng = np.random.default_rng(4)
    first, second = make_user(rng, index=1), make_user(rng, index=2, known=False)
    shared = [first, second, first, first, second]  # the examples of two decisions
    copies = [dataclasses.replace(user) for user in shared]  # five distinct objects
    encoded = user_tensors(shared, id_buckets=1024)
    expected = user_tensors(copies, id_buckets=1024)
    for item in dataclasses.fields(encoded):
        assert torch.equal(getattr(encoded, item.name), getattr(expected, item.name)), item.name
