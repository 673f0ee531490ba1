"""Candidate retrieval: the ~1,000 eligible posts most similar to a user vector.

Design (measured on 2 cores, 64-d, k=1000; see benchmarks/retrieval.py):

* One partition per post language. A request searches only its user's languages, so
  the language filter costs nothing and each graph is a fraction of the catalogue.
* Each partition keeps its vectors and eligibility columns (country, region lock,
  creation time, alive) in numpy arrays by slot, plus an hnswlib inner-product graph
  once it holds ``exact_threshold`` posts; smaller partitions are searched exactly.
* Country and age eligibility are applied by over-fetching from the graph and filtering
  the results with numpy, not with hnswlib's ``filter=`` callback: that callback takes
  the GIL on every visited node, so concurrent searches would serialise. The fetch
  size is ``max(ef_search, fetch_factor * k) / eligible fraction``, the fraction
  estimated on a strided sample of the partition. When few posts are eligible, or
  the fetch comes back short, the partition is searched exactly over its eligible
  posts instead.
* Posts are added, updated (same post index again) and removed incrementally:
  ``add_items``, ``mark_deleted`` and ``resize_index`` on the graph, slot reuse in the
  columns. Searches run concurrently (hnswlib releases the GIL); adds and removes take
  a write lock.
* Graph labels are the partition's slots, not post indices: post indices are catalogue
  rows of one process, so an index shipped by a learner is relabelled to the serving
  process's rows (:meth:`CandidateIndex.relabel`) without touching the graphs.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import hnswlib
import numpy as np
import numpy.typing as npt

from feedrank.core.feature_schema import (
    COUNTRY_VOCABULARY,
    LANGUAGE_VOCABULARY,
    LANGUAGES,
    BoolArray,
    FloatArray,
    IntArray,
)
from feedrank.explore import index_files
from feedrank.explore.index_files import IndexFormatError

__all__ = ["CandidateIndex", "IndexFormatError", "PostRows", "RetrievalConfig", "top_k"]

Progress = Callable[[int], None]  # told how many posts were just indexed


@dataclass(frozen=True)
class RetrievalConfig:
    """Tunables of the candidate index (recorded when it is saved)."""

    dim: int = 64
    M: int = 24  # graph out-degree (hnswlib's M)
    ef_construction: int = 128
    ef_search: int = 400  # least search depth in eligible posts, whatever k
    fetch_factor: float = 1.5  # search depth in eligible posts per post asked for
    ann_result_cost: float = 40.0  # one ANN result costs about this many exact-scan rows
    exact_threshold: int = 20_000  # partitions with fewer live posts have no graph
    sample_size: int = 2_048  # rows sampled to estimate the eligible fraction
    growth_factor: float = 1.5  # graph capacity growth on resize
    build_chunk: int = 20_000  # posts per add_items call (progress granularity)
    build_threads: int = -1  # hnswlib threads for inserts; -1: all cores
    seed: int = 100  # hnswlib's level-generator seed

    def __post_init__(self) -> None:
        if min(self.dim, self.M, self.ef_construction, self.ef_search, self.sample_size) < 1:
            raise ValueError(f"dim, M, ef and sample_size must be positive: {self}")
        if self.fetch_factor < 1.0 or self.growth_factor <= 1.0:
            raise ValueError("fetch_factor must be >= 1 and growth_factor > 1")


@dataclass(frozen=True)
class EligibilityFilter:
    """Who is asking: eligible posts were created in [min, max] and are not locked to
    another country (language is handled by choosing partitions)."""

    country: int
    min_created_ms: int
    max_created_ms: int


@dataclass(frozen=True)
class PostRows:
    """Posts to index, one row each; validated on construction."""

    post_index: IntArray
    embeddings: FloatArray
    language: IntArray
    country: IntArray
    region_locked: BoolArray
    created_ms: IntArray

    def __post_init__(self) -> None:
        count = self.post_index.shape[0]
        if self.embeddings.ndim != 2 or self.embeddings.shape[0] != count:
            raise ValueError(f"embeddings must be (n, dim) with n={count}")
        for item in fields(self):
            if getattr(self, item.name).shape[0] != count:
                raise ValueError(f"{item.name} has {getattr(self, item.name).shape[0]} rows")
        if count and (self.post_index.min() < 0 or np.unique(self.post_index).size != count):
            raise ValueError("post indices must be non-negative and distinct")
        for name, values, size in (
            ("language", self.language, len(LANGUAGE_VOCABULARY)),
            ("country", self.country, len(COUNTRY_VOCABULARY)),
        ):
            if count and (values.min() < 0 or values.max() >= size):
                raise ValueError(f"{name} index out of range [0, {size})")

    def where(self, mask: BoolArray) -> PostRows:
        return PostRows(**{item.name: getattr(self, item.name)[mask] for item in fields(self)})


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


def top_k(scores: npt.NDArray[np.float32], k: int) -> IntArray:
    """Positions of the ``k`` highest scores, highest first."""
    if scores.shape[0] > k:
        candidates = np.argpartition(-scores, k - 1)[:k]
    else:
        candidates = np.arange(scores.shape[0])
    order = np.argsort(-scores[candidates], kind="stable")
    return candidates[order].astype(np.int64)


class Partition:
    """The posts of one language: columns by slot, and an HNSW graph once big enough."""

    def __init__(self, config: RetrievalConfig) -> None:
        self.config = config
        self.vectors = np.empty((0, config.dim), dtype=np.float32)
        self.post_index = np.empty(0, dtype=np.int64)
        self.country = np.empty(0, dtype=np.int16)
        self.region_locked = np.empty(0, dtype=np.bool_)
        self.created_ms = np.empty(0, dtype=np.int64)
        self.alive = np.empty(0, dtype=np.bool_)
        self.used = 0  # slots [0, used) have been handed out
        self.live = 0
        self.free_slots: list[int] = []
        self.graph: Any = None  # hnswlib.Index once live >= exact_threshold

    def put(self, rows: PostRows) -> IntArray:
        """Store ``rows`` (not yet in this partition) and return their slots."""
        count = len(rows.post_index)
        reused = [self.free_slots.pop() for _ in range(min(count, len(self.free_slots)))]
        fresh = np.arange(self.used, self.used + count - len(reused), dtype=np.int64)
        slots = np.concatenate([np.array(reused, dtype=np.int64), fresh])
        self.used += fresh.size
        self._reserve(self.used)
        self.vectors[slots] = rows.embeddings
        self.post_index[slots] = rows.post_index
        self.country[slots] = rows.country
        self.region_locked[slots] = rows.region_locked
        self.created_ms[slots] = rows.created_ms
        self.alive[slots] = True
        self.live += count
        return slots

    def drop(self, slots: IntArray) -> None:
        if self.graph is not None:
            for slot in slots.tolist():
                self.graph.mark_deleted(slot)
        self.alive[slots] = False
        self.free_slots.extend(slots.tolist())
        self.live -= slots.size

    def index_in_graph(self, slots: IntArray, progress: Progress | None) -> None:
        """Insert ``slots`` into the graph, creating it over all live posts once due."""
        if self.graph is None:
            if self.live < self.config.exact_threshold:
                if progress is not None:
                    progress(slots.size)
                return
            slots = np.flatnonzero(self.alive[: self.used])
            self.graph = hnswlib.Index(space="ip", dim=self.config.dim)
            self.graph.init_index(
                max_elements=max(int(slots.size * self.config.growth_factor), 1),
                ef_construction=self.config.ef_construction,
                M=self.config.M,
                random_seed=self.config.seed,
            )
            self.graph.set_ef(self.config.ef_search)
        needed = self.graph.element_count + slots.size
        if needed > self.graph.max_elements:
            self.graph.resize_index(int(needed * self.config.growth_factor))
        for start in range(0, slots.size, self.config.build_chunk):
            chunk = slots[start : start + self.config.build_chunk]
            # A reused slot's label is marked deleted: add_items replaces and revives it.
            self.graph.add_items(self.vectors[chunk], chunk, num_threads=self.config.build_threads)
            if progress is not None:
                progress(chunk.size)

    def eligible(self, slots: IntArray | slice, where: EligibilityFilter) -> BoolArray:
        created = self.created_ms[slots]
        eligible: BoolArray = (
            self.alive[slots]
            & (created >= where.min_created_ms)
            & (created <= where.max_created_ms)
            & (~self.region_locked[slots] | (self.country[slots] == where.country))
        )
        return eligible

    def exact(
        self, vector: FloatArray, k: int, where: EligibilityFilter
    ) -> tuple[IntArray, FloatArray]:
        slots = np.flatnonzero(self.eligible(slice(0, self.used), where))
        similarities = (self.vectors[: self.used] @ vector)[slots]
        best = top_k(similarities, k)
        return self.post_index[slots[best]], similarities[best]

    def search(
        self, vector: FloatArray, k: int, where: EligibilityFilter
    ) -> tuple[IntArray, FloatArray]:
        """ANN with over-fetch and post-filtering; exact search where that is cheaper
        (small partition, few eligible posts) or where the fetch came back short."""
        if self.graph is None or self.live < self.config.exact_threshold:
            return self.exact(vector, k, where)
        sample = slice(0, self.used, max(1, self.used // self.config.sample_size))
        eligible = int(self.eligible(sample, where).sum())
        depth = max(self.config.ef_search, self.config.fetch_factor * k)
        fetch = math.ceil(depth * int(self.alive[sample].sum()) / max(eligible, 1))
        if eligible == 0 or fetch >= self.live or fetch * self.config.ann_result_cost > self.used:
            return self.exact(vector, k, where)  # exact is cheaper, or ANN would fetch it all
        try:
            labels, distances = self.graph.knn_query(vector, k=fetch, num_threads=1)
        except RuntimeError:  # hnswlib found fewer than ``fetch`` live posts
            return self.exact(vector, k, where)
        slots = labels[0].astype(np.int64)
        keep = self.eligible(slots, where)
        if int(keep.sum()) < k:
            return self.exact(vector, k, where)
        similarities = (1.0 - distances[0][keep]).astype(np.float32)
        best = top_k(similarities, k)
        return self.post_index[slots[keep][best]], similarities[best]

    def slot_columns(self) -> index_files.SlotColumns:
        """Every slot handed out, dead ones included (post index -1), so a saved graph's
        labels still name the same slots once restored."""
        used = self.used
        alive = self.alive[:used].copy()
        return index_files.SlotColumns(
            post_index=np.where(alive, self.post_index[:used], -1),
            vectors=self.vectors[:used],
            country=self.country[:used],
            region_locked=self.region_locked[:used],
            created_ms=self.created_ms[:used],
            alive=alive,
            graph=self.graph,
        )

    def restore(self, columns: index_files.SlotColumns) -> None:
        """Take saved slots as they were (into an empty partition); a saved partition
        without a graph gets one here once it is big enough."""
        used = int(columns.alive.shape[0])
        self._reserve(used)
        self.used = used
        self.vectors[:used] = columns.vectors
        self.post_index[:used] = columns.post_index
        self.country[:used] = columns.country
        self.region_locked[:used] = columns.region_locked
        self.created_ms[:used] = columns.created_ms
        self.alive[:used] = columns.alive
        self.live = int(columns.alive.sum())
        self.free_slots = np.flatnonzero(~columns.alive).tolist()
        self.graph = columns.graph
        if self.graph is None:
            self.index_in_graph(np.flatnonzero(columns.alive), None)

    def memory_bytes(self) -> int:
        columns = (self.vectors, self.post_index, self.country, self.region_locked)
        total = sum(column.nbytes for column in (*columns, self.created_ms, self.alive))
        if self.graph is not None:
            total += int(self.graph.index_file_size())
        return total

    def _reserve(self, capacity: int) -> None:
        if capacity <= self.alive.shape[0]:
            return
        size = max(capacity, int(self.alive.shape[0] * self.config.growth_factor), 1024)
        for name in ("vectors", "post_index", "country", "region_locked", "created_ms", "alive"):
            old = getattr(self, name)
            new = np.zeros((size, *old.shape[1:]), dtype=old.dtype)
            new[: old.shape[0]] = old
            setattr(self, name, new)


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
            index_files.save(directory, asdict(self.config), self._partitions)

    @classmethod
    def load(cls, directory: Path) -> CandidateIndex:
        """An index saved by :meth:`save`; IndexFormatError if it is not one."""
        config, saved = index_files.load(directory)
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
