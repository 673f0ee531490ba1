"""The pieces serving from the catalogue topics relies on: relabelled and restored
indexes and the vectors they hold, request languages from the vocabulary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from feedrank.core.feature_schema import LANGUAGE_VOCABULARY, FloatArray
from feedrank.core.settings import ExploreSettings
from feedrank.explore.errors import InvalidRankRequest
from feedrank.explore.queries import build_query
from feedrank.models.ann_index import CandidateIndex, RetrievalConfig

DIM = 8
NOW_MS = 1_764_000_000_000
SMALL = RetrievalConfig(dim=DIM, ef_search=40, exact_threshold=100, ann_result_cost=0.0)


def vectors(count: int, seed: int = 1) -> FloatArray:
    rng = np.random.default_rng(seed)
    values: FloatArray = rng.standard_normal((count, DIM)).astype(np.float32)
    values /= np.linalg.norm(values, axis=1, keepdims=True)
    return values


def index_of(count: int) -> tuple[CandidateIndex, FloatArray]:
    embedded = vectors(count)
    zeros = np.zeros(count, dtype=np.int64)
    index = CandidateIndex.build(
        np.arange(count, dtype=np.int64),
        embedded,
        languages=zeros,
        countries=zeros,
        region_locked=np.zeros(count, dtype=np.bool_),
        created_ms=np.full(count, NOW_MS, dtype=np.int64),
        config=SMALL,
    )
    return index, embedded


def search(index: CandidateIndex, vector: FloatArray, k: int) -> set[int]:
    found, _ = index.search(
        vector, k, languages=[0], country=0, min_created_ms=0, max_created_ms=NOW_MS
    )
    return set(found.tolist())


def test_a_saved_index_with_removed_posts_restores_slot_for_slot(tmp_path: Path) -> None:
    index, embedded = index_of(400)
    index.remove(np.arange(0, 400, 3))
    index.save(tmp_path / "ann")

    restored = CandidateIndex.load(tmp_path / "ann")

    assert len(restored) == len(index)
    np.testing.assert_array_equal(restored.post_indices(), index.post_indices())
    for probe in range(5):
        assert search(restored, embedded[probe], 20) == search(index, embedded[probe], 20)
    assert not any(row % 3 == 0 for row in search(restored, embedded[0], 200))


def test_relabelling_maps_posts_to_another_processes_rows_and_drops_unknown_ones() -> None:
    index, embedded = index_of(300)
    row_of = np.arange(300, dtype=np.int64)[::-1] + 1000  # ours: reversed, offset
    row_of[:10] = -1  # posts this process no longer has

    dropped = index.relabel(row_of)

    assert dropped == 10
    assert len(index) == 290
    found = search(index, embedded[50], 5)
    assert 1000 + 299 - 50 in found  # the learner's post 50 is our row 1249
    assert all(1000 <= row < 1300 - 10 for row in found)
    assert (1000 + 299) not in index  # the learner's post 0, dropped


def test_the_index_gives_back_each_posts_latest_vector() -> None:
    index, embedded = index_of(300)  # past the graph threshold: a graph and its columns
    later = vectors(2, seed=2)
    index.add(
        np.array([1, 1000]),
        later,
        languages=np.array([0, 3]),  # post 1000 in a partition of its own
        countries=np.zeros(2, dtype=np.int64),
        region_locked=np.zeros(2, dtype=np.bool_),
        created_ms=np.full(2, NOW_MS, dtype=np.int64),
    )
    index.remove(np.array([2]))

    found = index.vectors(np.array([0, 1, 1000, 2, 5000]))
    np.testing.assert_array_equal(found[0], embedded[0])
    np.testing.assert_array_equal(found[1:3], later)
    np.testing.assert_array_equal(found[3:], np.zeros((2, DIM), dtype=np.float32))


def query(language: str = "", country: str = "") -> tuple[int | None, int | None]:
    built = build_query(
        user_id="u1",
        limit=10,
        request_time_ms=NOW_MS,
        language=language,
        country=country,
        surface="",
        numeric_context={},
        settings=ExploreSettings(),
        now_ms=NOW_MS,
    )
    return built.language, built.country


def test_request_languages_come_from_the_catalogues_vocabulary() -> None:
    swahili = LANGUAGE_VOCABULARY.intern("sw")  # as a catalogue post in Swahili does
    assert query("sw") == (swahili, None)
    assert query("SW")[0] == swahili
    assert query("tlh-Latn")[0] is None  # well formed, but no post or user has it
    assert query(country="ke")[1] is not None  # any two-letter country
    with pytest.raises(InvalidRankRequest) as raised:
        query("not a language", "KEN")
    fields = {violation.field for violation in raised.value.violations}
    assert fields == {"context.language", "context.country"}


def test_countries_are_rewritten_in_place_for_the_region_lock() -> None:
    count = 300
    embedded = vectors(count)
    index = CandidateIndex.build(
        np.arange(count, dtype=np.int64),
        embedded,
        languages=np.zeros(count, dtype=np.int64),
        countries=np.zeros(count, dtype=np.int64),
        region_locked=np.ones(count, dtype=np.bool_),  # shown only in their country
        created_ms=np.full(count, NOW_MS, dtype=np.int64),
        config=SMALL,
    )
    moved = np.arange(50, dtype=np.int64)
    index.set_countries(np.append(moved, 10_000), np.ones(51, dtype=np.int64))  # 10,000: absent

    def found(country: int) -> set[int]:
        rows, _ = index.search(
            embedded[0],
            count,
            languages=[0],
            country=country,
            min_created_ms=0,
            max_created_ms=NOW_MS,
        )
        return set(rows.tolist())

    assert found(1) == set(moved.tolist())
    assert not found(0) & set(moved.tolist())
    assert len(index) == count  # no post added or removed
