from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from feedrank.core.feature_schema import FloatArray
from feedrank.models.ranker import RankerConfig, RankerModel, _affinity_match
from tests.unit.models.factories import AS_OF_MS, make_posts, make_user

SMALL = RankerConfig(
    tower_dim=16, user_id_buckets=1024, post_id_buckets=1024, hidden_sizes=(64, 32)
)
REQUEST_MS = AS_OF_MS + 3_600_000


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Serving scores each request on one thread; restore torch's setting after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def unit_vectors(rng: np.random.Generator, count: int, dim: int) -> FloatArray:
    vectors: FloatArray = rng.standard_normal((count, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def test_scores_1000_candidates_in_one_call(one_thread: None) -> None:
    """Its speed is a benchmark's (``benchmarks/rank_cost.py``: the ranker's dense layers
    per Rank), not a timed unit test's: one here failed on a loaded box (54 ms)."""
    model = RankerModel(RankerConfig())  # full size, as served
    rng = np.random.default_rng(0)
    user, posts = make_user(rng), make_posts(rng, 1000)
    user_vector, post_vectors = unit_vectors(rng, 1, 64)[0], unit_vectors(rng, 1000, 64)
    scores = model.score(user, posts, user_vector, post_vectors, REQUEST_MS)
    assert scores.shape == (1000,)
    assert np.all((scores > 0) & (scores < 1))
    again = model.score(user, posts, user_vector, post_vectors, REQUEST_MS)
    np.testing.assert_array_equal(scores, again)  # scoring is a pure function of its inputs


def test_batch_scores_equal_one_by_one_scores() -> None:
    model = RankerModel(SMALL)
    rng = np.random.default_rng(1)
    user, posts = make_user(rng), make_posts(rng, 40)
    user_vector, post_vectors = unit_vectors(rng, 1, 16)[0], unit_vectors(rng, 40, 16)
    batch = model.score(user, posts, user_vector, post_vectors, REQUEST_MS)
    for row in (0, 17, 39):
        rows = np.array([row])
        single = model.score(user, posts.take(rows), user_vector, post_vectors[rows], REQUEST_MS)
        assert single[0] == pytest.approx(batch[row], rel=1e-5)


def test_serving_scores_match_the_training_forward() -> None:
    model = RankerModel(SMALL)
    rng = np.random.default_rng(2)
    user, posts = make_user(rng), make_posts(rng, 8)
    user_vector, post_vectors = unit_vectors(rng, 1, 16)[0], unit_vectors(rng, 8, 16)
    served = model.score(user, posts, user_vector, post_vectors, REQUEST_MS, surface="home")
    model.eval()
    with torch.no_grad():
        logits = model(
            model.user_tensors([user] * 8),
            model.post_tensors(posts, at_ms=REQUEST_MS),
            model.context_tensors([REQUEST_MS] * 8, ["home"] * 8),
            torch.from_numpy(post_vectors @ user_vector),
        )
    assert np.allclose(served, torch.sigmoid(logits).numpy(), atol=1e-6)


def test_scores_depend_on_context_and_tower_similarity() -> None:
    model = RankerModel(SMALL)
    rng = np.random.default_rng(3)
    user, posts = make_user(rng), make_posts(rng, 20)
    user_vector, post_vectors = unit_vectors(rng, 1, 16)[0], unit_vectors(rng, 20, 16)
    base = model.score(user, posts, user_vector, post_vectors, REQUEST_MS)
    later = model.score(user, posts, user_vector, post_vectors, REQUEST_MS + 9 * 3_600_000)
    elsewhere = model.score(user, posts, user_vector, post_vectors, REQUEST_MS, surface="search")
    flipped = model.score(user, posts, -user_vector, post_vectors, REQUEST_MS)
    for other in (later, elsewhere, flipped):
        assert not np.allclose(base, other)


def test_without_time_context_the_hour_and_weekday_inputs_are_zeros() -> None:
    times = [REQUEST_MS, REQUEST_MS + 9 * 3_600_000, REQUEST_MS + 3 * 86_400_000]
    with_time = RankerModel(SMALL).context_tensors(times, ["", "", "search"])
    without = RankerModel(dataclasses.replace(SMALL, time_context=False)).context_tensors(
        times, ["", "", "search"]
    )

    assert torch.count_nonzero(without.numeric) == 0
    assert without.numeric.shape == with_time.numeric.shape  # same model shapes either way
    assert torch.equal(without.surface_bucket, with_time.surface_bucket)
    assert len({tuple(row.tolist()) for row in with_time.numeric}) == 3


def test_mismatched_vectors_are_refused() -> None:
    model = RankerModel(SMALL)
    rng = np.random.default_rng(4)
    user, posts = make_user(rng), make_posts(rng, 5)
    with pytest.raises(ValueError, match="post_vectors"):
        model.score(user, posts, unit_vectors(rng, 1, 16)[0], unit_vectors(rng, 4, 16), 0)
    with pytest.raises(ValueError, match="user_vector"):
        model.score(user, posts, unit_vectors(rng, 1, 8)[0], unit_vectors(rng, 5, 16), 0)


def test_logged_positions_shift_the_logit_and_serving_scores_at_the_top() -> None:
    model = RankerModel(SMALL)
    with torch.no_grad():  # a trained position bias: lower positions are looked at less
        model.position_bias.weight.copy_(-0.1 * torch.arange(SMALL.position_buckets)[:, None])
    rng = np.random.default_rng(5)
    user, posts = make_user(rng), make_posts(rng, 4)
    user_vector, post_vectors = unit_vectors(rng, 1, 16)[0], unit_vectors(rng, 4, 16)
    model.eval()

    def logits(positions: list[int] | None) -> torch.Tensor:
        with torch.no_grad():
            result: torch.Tensor = model(
                model.user_tensors([user] * 4),
                model.post_tensors(posts, at_ms=REQUEST_MS),
                model.context_tensors([REQUEST_MS] * 4, [""] * 4),
                torch.from_numpy(post_vectors @ user_vector),
                None if positions is None else torch.tensor(positions, dtype=torch.int64),
            )
        return result

    at_top = logits([0, 0, 0, 0])
    assert torch.equal(logits(None), at_top)
    shifted = logits([0, 1, 3, 500])  # beyond the last bucket shares the last one's bias
    last = -0.1 * (SMALL.position_buckets - 1)
    assert np.allclose((shifted - at_top).numpy(), [0.0, -0.1, -0.3, last], atol=1e-6)
    served = model.score(user, posts, user_vector, post_vectors, REQUEST_MS)
    assert np.allclose(served, torch.sigmoid(at_top).numpy(), atol=1e-6)


def test_scores_depend_on_the_user_topic_affinity() -> None:
    model = RankerModel(SMALL)
    rng = np.random.default_rng(5)
    user, posts = make_user(rng), make_posts(rng, 20)
    user_vector, post_vectors = unit_vectors(rng, 1, 16)[0], unit_vectors(rng, 20, 16)
    base = model.score(user, posts, user_vector, post_vectors, REQUEST_MS)
    no_history = dataclasses.replace(user, topic_affinity=())
    other = model.score(no_history, posts, user_vector, post_vectors, REQUEST_MS)
    assert not np.allclose(base, other)


def test_affinity_match_is_the_cosine_of_affinity_and_topics() -> None:
    affinity = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 0.0]])
    topics = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    match = _affinity_match(affinity, topics)
    assert match.tolist() == pytest.approx([0.5**0.5, 0.0])


def test_positions_beyond_the_trained_ones_follow_the_learned_curve() -> None:
    model = RankerModel(SMALL)
    with torch.no_grad():
        model.position_slope.fill_(0.5)  # a trained decay; offsets stay untrained (0)
    positions = torch.tensor([0, 9, 19, 500], dtype=torch.int64)
    biases = model._position_logits(positions)
    expected = -0.5 * torch.log1p(positions.to(torch.float32))
    assert torch.allclose(biases, expected)
    assert biases[2] < biases[1]  # never an untrained 0 above its trained neighbours
    assert model._position_logits(None) == 0.0
