"""Candidate retrieval: the ~1,000 eligible posts most similar to a user vector.

Design (measured on 2 cores, 64-d, k=1000; see benchmarks/retrieval.py):

* One partition per post language (:mod:`feedrank.models.ann_partition`). A request
  searches only its user's languages, so the language filter costs nothing and each
  graph is a fraction of the catalogue. Within a partition, country and age
  eligibility come from over-fetching the HNSW graph and filtering with numpy, or from
  an exact search where that is cheaper.
* Posts are added, updated (same post index again) and removed incrementally. Searches
  run concurrently (hnswlib releases the GIL); adds and removes take a write lock.
* Graph labels are the partition's slots, not post indices: post indices are catalogue
  rows of one process, so an index shipped by a learner is relabelled to the serving
  process's rows (:meth:`CandidateIndex.relabel`) without touching the graphs.
* Saved and loaded by :mod:`feedrank.models.ann_index_files`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np

from feedrank.core.feature_schema import (
    LANGUAGE_VOCABULARY,
    LANGUAGES,
    BoolArray,
    FloatArray,
    IntArray,
)
from feedrank.models import ann_index_files
from feedrank.models.ann_index_files import IndexFormatError
from feedrank.models.ann_partition import (
    EligibilityFilter,
    Partition,
    PostRows,
    Progress,
    RetrievalConfig,
    top_k,
)

__all__ = ["CandidateIndex", "IndexFormatError", "PostRows", "RetrievalConfig", "top_k"]


class ReadWriteLock:
    """Many readers at once, or one writer; a waiting writer holds back new readers."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._condition:
            self._condition.wait_for(lambda: not (self._writing or self._writers_waiting))
            self._readers += 1
        try:
            yield
        finally:
            with self._condition:
                self._readers -= 1
                self._condition.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._condition:
            self._writers_waiting += 1
            self._condition.wait_for(lambda: not (self._writing or self._readers))
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._condition:
                self._writing = False
                self._condition.notify_all()


class CandidateIndex:
    """Post vectors by language for eligibility-filtered inner-product search.

    Thread-safe: any number of concurrent searches; ``add`` and ``remove`` wait for them.
    """

    def __init__(self, config: RetrievalConfig | None = None) -> None:
        self.config = config or RetrievalConfig()
        self._partitions = [Partition(self.config) for _ in LANGUAGES]
        self._language_of = np.full(0, -1, dtype=np.int16)  # by post index; -1: absent
        self._slot_of = np.full(0, -1, dtype=np.int64)
        self._lock = ReadWriteLock()

    @classmethod
    def build(
        cls,
        post_indices: IntArray,
        embeddings: FloatArray,
        *,
        languages: IntArray,
        countries: IntArray,
        region_locked: BoolArray,
        created_ms: IntArray,
        config: RetrievalConfig | None = None,
        progress: Progress | None = None,
    ) -> CandidateIndex:
        """An index over these posts (``progress`` is told how many posts each step indexed)."""
        index = cls(config)
        index.add(
            post_indices,
            embeddings,
            languages=languages,
            countries=countries,
            region_locked=region_locked,
            created_ms=created_ms,
            progress=progress,
        )
        return index

    def add(
        self,
        post_indices: IntArray,
        embeddings: FloatArray,
        *,
        languages: IntArray,
        countries: IntArray,
        region_locked: BoolArray,
        created_ms: IntArray,
        progress: Progress | None = None,
    ) -> None:
        """Add posts; a post already indexed is replaced (new vector, language, ...)."""
        rows = PostRows(
            post_index=np.asarray(post_indices, dtype=np.int64),
            embeddings=np.ascontiguousarray(embeddings, dtype=np.float32),
            language=np.asarray(languages, dtype=np.int64),
            country=np.asarray(countries, dtype=np.int64),
            region_locked=np.asarray(region_locked, dtype=np.bool_),
            created_ms=np.asarray(created_ms, dtype=np.int64),
        )
        if rows.embeddings.shape[1] != self.config.dim:
            raise ValueError(
                f"embeddings have dim {rows.embeddings.shape[1]}, not {self.config.dim}"
            )
        with self._lock.writing():
            self._remove_locked(rows.post_index)
            self._reserve(int(rows.post_index.max(initial=-1)) + 1)
            self._partitions_for(int(rows.language.max(initial=-1)) + 1)
            for language, partition in enumerate(self._partitions):
                subset = rows.where(rows.language == language)
                if subset.post_index.size == 0:
                    continue
                slots = partition.put(subset)
                self._language_of[subset.post_index] = language
                self._slot_of[subset.post_index] = slots
                partition.index_in_graph(slots, progress)

    def remove(self, post_indices: IntArray | Sequence[int]) -> int:
        """Remove posts (unknown ones are ignored); returns how many were removed."""
        with self._lock.writing():
            return self._remove_locked(np.asarray(post_indices, dtype=np.int64))

    def remove_created_before(self, cutoff_ms: int) -> int:
        """Evict posts created before ``cutoff_ms`` (past the maximum age): keeping the
        catalogue within the age window keeps the age filter from wasting ANN fetches."""
        with self._lock.writing():
            stale = [
                partition.post_index[: partition.used][
                    partition.alive[: partition.used]
                    & (partition.created_ms[: partition.used] < cutoff_ms)
                ]
                for partition in self._partitions
            ]
            return self._remove_locked(np.concatenate(stale))

    def search(
        self,
        user_vector: FloatArray,
        k: int,
        *,
        languages: Sequence[int],
        country: int,
        min_created_ms: int,
        max_created_ms: int,
    ) -> tuple[IntArray, FloatArray]:
        """The ``k`` most similar eligible posts (post indices, similarities), best first."""
        where = EligibilityFilter(country, min_created_ms, max_created_ms)
        return self._search(user_vector, k, languages, where, exact=False)

    def exact_search(
        self,
        user_vector: FloatArray,
        k: int,
        *,
        languages: Sequence[int],
        country: int,
        min_created_ms: int,
        max_created_ms: int,
    ) -> tuple[IntArray, FloatArray]:
        """As :meth:`search`, by brute force (numpy): the reference for recall."""
        where = EligibilityFilter(country, min_created_ms, max_created_ms)
        return self._search(user_vector, k, languages, where, exact=True)

    def __len__(self) -> int:
        """How many posts are indexed (live, not removed)."""
        return sum(partition.live for partition in self._partitions)

    def __contains__(self, post_index: int) -> bool:
        with self._lock.reading():
            return 0 <= post_index < self._language_of.size and self._language_of[post_index] >= 0

    def has_graph(self, language: int) -> bool:
        """Whether ``language`` has an HNSW graph (else its searches are always exact)."""
        partition = self._partitions[language]
        return partition.graph is not None and partition.live >= self.config.exact_threshold

    def memory_bytes(self) -> int:
        """Approximate resident size: graphs, vectors and eligibility columns."""
        with self._lock.reading():
            lookups = self._language_of.nbytes + self._slot_of.nbytes
            return lookups + sum(partition.memory_bytes() for partition in self._partitions)

    def save(self, directory: Path) -> None:
        """hnswlib graphs, numpy columns (.npz, no pickle) and index.json under ``directory``."""
        with self._lock.reading():
            ann_index_files.save(directory, asdict(self.config), self._partitions)

    @classmethod
    def load(cls, directory: Path) -> CandidateIndex:
        """An index saved by :meth:`save`; IndexFormatError if it is not one."""
        config, saved = ann_index_files.load(directory)
        index = cls(_config_from_dict(config))
        for partition, columns in zip(index._partitions, saved, strict=False):
            partition.restore(columns)
        with index._lock.writing():
            index._rebuild_lookups()
        return index

    def relabel(self, row_of: IntArray) -> int:
        """Translate every post index ``i`` to ``row_of[i]`` (another process's rows for
        the same posts); posts mapped to -1, or past ``row_of``, leave the index.
        Returns how many posts left. The graphs are untouched (their labels are slots)."""
        with self._lock.writing():
            dropped = 0
            for partition in self._partitions:
                slots = np.flatnonzero(partition.alive[: partition.used])
                old = partition.post_index[slots]
                new = np.full(old.shape, -1, dtype=np.int64)
                inside = old < row_of.size
                new[inside] = row_of[old[inside]]
                gone = slots[new < 0]
                if gone.size:
                    partition.drop(gone)
                    dropped += int(gone.size)
                partition.post_index[slots] = new
            self._rebuild_lookups()
            return dropped

    def set_countries(self, post_indices: IntArray, countries: IntArray) -> None:
        """Rewrite the country of these indexed posts in place (a filter attribute: no
        graph changes); posts not in the index are skipped."""
        with self._lock.writing():
            rows = np.asarray(post_indices, dtype=np.int64)
            inside = rows < self._language_of.size
            rows, values = rows[inside], np.asarray(countries, dtype=np.int64)[inside]
            languages = self._language_of[rows]
            for language in np.unique(languages[languages >= 0]).tolist():
                chosen = languages == language
                slots = self._slot_of[rows[chosen]]
                self._partitions[language].country[slots] = values[chosen]

    def vectors(self, post_indices: IntArray) -> FloatArray:
        """The stored vectors of these posts, (n, dim); zeros for posts not indexed."""
        with self._lock.reading():
            rows = np.asarray(post_indices, dtype=np.int64)
            found = np.zeros((rows.size, self.config.dim), dtype=np.float32)
            inside = rows < self._language_of.size
            languages = np.full(rows.size, -1, dtype=np.int64)
            languages[inside] = self._language_of[rows[inside]]
            for language in np.unique(languages[languages >= 0]).tolist():
                chosen = np.flatnonzero(languages == language)
                slots = self._slot_of[rows[chosen]]
                found[chosen] = self._partitions[language].vectors[slots]
            return found

    def post_indices(self) -> IntArray:
        """The post indices of every indexed post (sorted)."""
        with self._lock.reading():
            return np.flatnonzero(self._language_of >= 0).astype(np.int64)

    def _rebuild_lookups(self) -> None:
        """``_language_of`` and ``_slot_of`` from the partitions' live slots."""
        self._language_of = np.full(0, -1, dtype=np.int16)
        self._slot_of = np.full(0, -1, dtype=np.int64)
        for language, partition in enumerate(self._partitions):
            slots = np.flatnonzero(partition.alive[: partition.used])
            rows = partition.post_index[slots]
            self._reserve(int(rows.max(initial=-1)) + 1)
            self._language_of[rows] = language
            self._slot_of[rows] = slots

    def _search(
        self,
        vector: FloatArray,
        k: int,
        languages: Sequence[int],
        where: EligibilityFilter,
        *,
        exact: bool,
    ) -> tuple[IntArray, FloatArray]:
        query = np.ascontiguousarray(vector, dtype=np.float32)
        if query.shape != (self.config.dim,):
            raise ValueError(f"user_vector has shape {query.shape}, expected ({self.config.dim},)")
        if k < 1:
            raise ValueError(f"k must be positive, got {k}")
        if any(not 0 <= language < len(LANGUAGE_VOCABULARY) for language in languages):
            raise ValueError(
                f"language indices must be in [0, {len(LANGUAGE_VOCABULARY)}): {languages}"
            )
        found: list[tuple[IntArray, FloatArray]] = []
        with self._lock.reading():
            for language in dict.fromkeys(languages):
                if language >= len(self._partitions):
                    continue  # a language no indexed post has
                partition = self._partitions[language]
                if partition.live == 0:
                    continue
                if exact:
                    found.append(partition.exact(query, k, where))
                else:
                    found.append(partition.search(query, k, where))
        if not found:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        if len(found) == 1:
            return found[0]  # a partition's answer is already its best k, best first
        post_index = np.concatenate([item[0] for item in found])
        similarities = np.concatenate([item[1] for item in found])
        best = top_k(similarities, k)
        return post_index[best], similarities[best]

    def _partitions_for(self, languages: int) -> None:
        """One partition per language code up to ``languages`` (a new language from the
        catalogue gets its own when its first post is added)."""
        while len(self._partitions) < languages:
            self._partitions.append(Partition(self.config))

    def _remove_locked(self, post_indices: IntArray) -> int:
        present = post_indices[(post_indices >= 0) & (post_indices < self._language_of.size)]
        present = np.unique(present[self._language_of[present] >= 0])
        languages = self._language_of[present]
        for language in np.unique(languages).tolist():
            members = present[languages == language]
            self._partitions[language].drop(self._slot_of[members])
        self._language_of[present] = -1
        self._slot_of[present] = -1
        return int(present.size)

    def _reserve(self, size: int) -> None:
        if size <= self._language_of.size:
            return
        size = max(size, int(self._language_of.size * self.config.growth_factor))
        self._language_of = np.concatenate(
            [self._language_of, np.full(size - self._language_of.size, -1, dtype=np.int16)]
        )
        self._slot_of = np.concatenate(
            [self._slot_of, np.full(size - self._slot_of.size, -1, dtype=np.int64)]
        )


def _config_from_dict(values: dict[str, Any]) -> RetrievalConfig:
    names = {item.name for item in fields(RetrievalConfig)}
    if set(values) != names:
        raise IndexFormatError(f"config fields differ: {sorted(set(values) ^ names)}")
    try:
        return RetrievalConfig(**values)
    except (TypeError, ValueError) as error:
        raise IndexFormatError(f"invalid config: {error}") from error
