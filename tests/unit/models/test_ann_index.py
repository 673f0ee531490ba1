from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from feedrank.core.feature_schema import BoolArray, FloatArray, IntArray
from feedrank.core.time_units import DAY_MS
from feedrank.models.ann_index import (
    CandidateIndex,
    IndexFormatError,
    RetrievalConfig,
)
from feedrank.models.ann_partition import Partition

NOW_MS = 30 * DAY_MS
DIM = 16
# Small graphs, and ANN whenever a graph exists (no cost-based switch to exact search).
SMALL = RetrievalConfig(dim=DIM, ef_search=50, exact_threshold=500, ann_result_cost=0.0)


@dataclass(frozen=True)
class Posts:
    post_index: IntArray
    vectors: FloatArray
    language: IntArray
    country: IntArray
    region_locked: BoolArray
    created_ms: IntArray


def unit_vectors(rng: np.random.Generator, count: int, dim: int = DIM) -> FloatArray:
    vectors: FloatArray = rng.standard_normal((count, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def make_posts(
    rng: np.random.Generator, count: int, *, first: int = 0, languages: int = 2, dim: int = DIM
) -> Posts:
    return Posts(
        post_index=np.arange(first, first + count, dtype=np.int64),
        vectors=unit_vectors(rng, count, dim),
        language=rng.integers(languages, size=count),
        country=rng.integers(10, size=count),
        region_locked=rng.random(count) < 0.3,
        created_ms=rng.integers(NOW_MS - 10 * DAY_MS, NOW_MS + DAY_MS, size=count),
    )


def build(posts: Posts, config: RetrievalConfig = SMALL) -> CandidateIndex:
    return CandidateIndex.build(
        posts.post_index,
        posts.vectors,
        languages=posts.language,
        countries=posts.country,
        region_locked=posts.region_locked,
        created_ms=posts.created_ms,
        config=config,
    )


def add(index: CandidateIndex, posts: Posts) -> None:
    index.add(
        posts.post_index,
        posts.vectors,
        languages=posts.language,
        countries=posts.country,
        region_locked=posts.region_locked,
        created_ms=posts.created_ms,
    )


@pytest.fixture(scope="module")
def catalogue() -> Posts:
    return make_posts(np.random.default_rng(0), 6_000)


@pytest.fixture(scope="module")
def index(catalogue: Posts) -> CandidateIndex:
    return build(catalogue)


def search(
    index: CandidateIndex, vector: FloatArray, k: int, *, exact: bool = False, country: int = 3
) -> tuple[IntArray, FloatArray]:
    method = index.exact_search if exact else index.search
    return method(
        vector,
        k,
        languages=[1],
        country=country,
        min_created_ms=NOW_MS - 7 * DAY_MS,
        max_created_ms=NOW_MS,
    )


@pytest.mark.parametrize("exact", [False, True])
def test_results_honour_every_eligibility_filter(
    index: CandidateIndex, catalogue: Posts, exact: bool
) -> None:
    assert index.has_graph(1)
    rng = np.random.default_rng(1)
    for query in unit_vectors(rng, 20):
        found, similarities = search(index, query, 100, exact=exact)
        assert found.size == 100
        assert np.all(catalogue.language[found] == 1)
        assert np.all(~catalogue.region_locked[found] | (catalogue.country[found] == 3))
        assert np.all(catalogue.created_ms[found] >= NOW_MS - 7 * DAY_MS)
        assert np.all(catalogue.created_ms[found] <= NOW_MS)
        assert np.all(np.diff(similarities) <= 0)
        assert np.allclose(similarities, catalogue.vectors[found] @ query, atol=1e-5)


def test_hnsw_recall_at_100_against_exact_on_20k_random_vectors() -> None:
    rng = np.random.default_rng(2)
    posts = make_posts(rng, 20_000, languages=1, dim=64)
    config = RetrievalConfig(exact_threshold=1_000, ann_result_cost=0.0)
    big = build(posts, config)
    recalls = []
    for query in unit_vectors(rng, 50, 64):
        found, _ = big.search(
            query, 100, languages=[0], country=3, min_created_ms=0, max_created_ms=NOW_MS
        )
        truth, _ = big.exact_search(
            query, 100, languages=[0], country=3, min_created_ms=0, max_created_ms=NOW_MS
        )
        recalls.append(np.intersect1d(found, truth).size / truth.size)
    assert float(np.mean(recalls)) >= 0.95


class RecordingGraph:
    """An hnswlib graph that records each query's fetch size."""

    def __init__(self, graph: object) -> None:
        self.graph = graph
        self.fetches: list[int] = []

    def knn_query(self, vector: FloatArray, *, k: int, num_threads: int) -> object:
        self.fetches.append(k)
        return self.graph.knn_query(vector, k=k, num_threads=num_threads)  # type: ignore[attr-defined]


def recorded(index: CandidateIndex, language: int) -> tuple[Partition, RecordingGraph]:
    """``language``'s partition, its graph replaced by one recording each fetch."""
    partition = index._partitions[language]
    graph = RecordingGraph(partition.graph)
    partition.graph = graph
    return partition, graph


def test_the_over_fetch_follows_the_share_the_last_search_found_eligible(
    catalogue: Posts,
) -> None:
    index = build(catalogue)
    partition, graph = recorded(index, 1)
    exact_searches: list[object] = []
    exact = partition.exact

    def recorded_exact(*args: object) -> tuple[IntArray, FloatArray]:
        exact_searches.append(args)
        return exact(*args)  # type: ignore[arg-type]

    partition.exact = recorded_exact  # type: ignore[method-assign,assignment]
    query = unit_vectors(np.random.default_rng(9), 1)[0]
    # About half the partition is eligible for country 3 (age window, country locks);
    # told all of it is, the first fetch comes back short and is retried larger.
    partition.eligible_share[3] = 1.0
    found, _ = search(index, query, 100)
    assert found.size == 100
    assert not exact_searches
    depth = max(SMALL.ef_search, SMALL.fetch_factor * 100)  # eligible posts to fetch
    first, retried = graph.fetches
    assert first == math.ceil(depth)
    assert retried > first
    learned = partition.eligible_share[3]
    assert 0.3 < learned < 0.7
    # The next search sizes its one fetch by the share just found.
    graph.fetches.clear()
    found, _ = search(index, query, 100)
    assert found.size == 100
    assert graph.fetches == [math.ceil(depth / learned)]
    assert not exact_searches


def test_a_search_that_found_nothing_eligible_does_not_send_the_next_ones_exact(
    catalogue: Posts,
) -> None:
    index = build(catalogue)
    partition, graph = recorded(index, 1)
    query = unit_vectors(np.random.default_rng(10), 1)[0]
    # The last search for country 3 found none of its fetch eligible (a request with an
    # age window of its own, say); the next, ordinary one samples the partition again
    # and searches the graph instead of going exact.
    partition.eligible_share[3] = 0.0
    found, _ = search(index, query, 100)
    assert found.size == 100
    assert len(graph.fetches) == 1


def test_exact_fallback_below_the_threshold(catalogue: Posts) -> None:
    small = build(catalogue, RetrievalConfig(dim=DIM, exact_threshold=100_000))
    assert not any(small.has_graph(language) for language in range(8))
    for query in unit_vectors(np.random.default_rng(3), 5):
        found, similarities = search(small, query, 50)
        truth, truth_similarities = search(small, query, 50, exact=True)
        assert np.array_equal(found, truth)
        assert np.array_equal(similarities, truth_similarities)


def test_added_post_is_found_and_removed_post_is_not(catalogue: Posts) -> None:
    index = build(catalogue)
    query = unit_vectors(np.random.default_rng(4), 1)[0]
    new = Posts(
        post_index=np.array([50_000]),
        vectors=query[None, :],
        language=np.array([1]),
        country=np.array([3]),
        region_locked=np.array([True]),
        created_ms=np.array([NOW_MS]),
    )
    add(index, new)
    assert 50_000 in index
    assert len(index) == 6_001
    found, similarities = search(index, query, 10)
    assert found[0] == 50_000
    assert similarities[0] == pytest.approx(1.0, abs=1e-5)
    assert search(index, query, 10, country=4)[0][0] != 50_000  # locked to country 3
    assert index.remove([50_000, 123_456]) == 1
    assert 50_000 not in search(index, query, 10)[0]
    assert 50_000 not in index


def test_re_adding_a_post_updates_it_in_place(catalogue: Posts) -> None:
    index = build(catalogue)
    query = unit_vectors(np.random.default_rng(5), 1)[0]
    target = int(np.flatnonzero(catalogue.language == 0)[0])
    moved = Posts(
        post_index=np.array([target]),
        vectors=query[None, :],
        language=np.array([1]),
        country=np.array([0]),
        region_locked=np.array([False]),
        created_ms=np.array([NOW_MS]),
    )
    add(index, moved)
    assert len(index) == 6_000
    assert search(index, query, 5)[0][0] == target
    index.remove([target])
    add(index, moved)  # back after a removal: hnswlib un-deletes the same node
    assert search(index, query, 5)[0][0] == target


def test_incremental_adds_grow_the_graph_without_a_rebuild() -> None:
    rng = np.random.default_rng(6)
    index = build(make_posts(rng, 1_500))
    memory_before = index.memory_bytes()
    for batch in range(4):
        add(index, make_posts(rng, 1_500, first=10_000 * (batch + 1)))
    assert len(index) == 7_500
    assert index.memory_bytes() > memory_before
    query = unit_vectors(rng, 1)[0]
    found, _ = search(index, query, 100)
    truth, _ = search(index, query, 100, exact=True)
    assert np.intersect1d(found, truth).size >= 90


def test_old_posts_can_be_evicted(catalogue: Posts) -> None:
    index = build(catalogue)
    cutoff = NOW_MS - 5 * DAY_MS
    evicted = index.remove_created_before(cutoff)
    assert evicted == int((catalogue.created_ms < cutoff).sum())
    assert len(index) == 6_000 - evicted


def test_save_and_load_round_trip(index: CandidateIndex, tmp_path: Path) -> None:
    index.save(tmp_path / "index")
    loaded = CandidateIndex.load(tmp_path / "index")
    assert len(loaded) == len(index)
    assert loaded.config == index.config
    assert loaded.has_graph(1)
    for query in unit_vectors(np.random.default_rng(7), 5):
        assert np.array_equal(search(loaded, query, 50)[0], search(index, query, 50)[0])


def test_load_refuses_a_broken_manifest_or_pickled_columns(
    index: CandidateIndex, tmp_path: Path
) -> None:
    index.save(tmp_path / "broken")
    (tmp_path / "broken" / "index.json").write_text("{not json")
    with pytest.raises(IndexFormatError):
        CandidateIndex.load(tmp_path / "broken")
    index.save(tmp_path / "pickled")
    columns = dict(np.load(tmp_path / "pickled" / "en.npz"))
    columns["country"] = np.array([object()] * columns["country"].size, dtype=object)
    np.savez(tmp_path / "pickled" / "en.npz", **columns)  # object arrays are pickled
    with pytest.raises(IndexFormatError):
        CandidateIndex.load(tmp_path / "pickled")


def test_concurrent_searches_while_posts_are_added_and_removed(catalogue: Posts) -> None:
    index = build(catalogue)
    rng = np.random.default_rng(8)
    queries = unit_vectors(rng, 40)
    failures: list[BaseException] = []

    def searcher() -> None:
        try:
            for query in queries:
                found, _ = search(index, query, 20)
                assert np.all(catalogue.language[found[found < 6_000]] == 1)
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            failures.append(error)

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    for thread in threads:
        thread.start()
    for batch in range(5):
        add(index, make_posts(rng, 200, first=100_000 + 1_000 * batch))
        index.remove(np.arange(batch * 100, batch * 100 + 100))
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(index) == 6_000 + 1_000 - 500


def test_invalid_input_is_refused(index: CandidateIndex) -> None:
    with pytest.raises(ValueError, match="shape"):
        index.search(
            np.zeros(3, dtype=np.float32),
            5,
            languages=[0],
            country=0,
            min_created_ms=0,
            max_created_ms=NOW_MS,
        )
    with pytest.raises(ValueError, match="distinct"):
        index.add(
            np.array([1, 1]),
            unit_vectors(np.random.default_rng(9), 2),
            languages=np.array([0, 0]),
            countries=np.array([0, 0]),
            region_locked=np.array([False, False]),
            created_ms=np.array([0, 0]),
        )
