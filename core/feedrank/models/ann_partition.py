"""One language's share of the candidate index: post columns by slot and an HNSW graph.

A :class:`~feedrank.models.ann_index.CandidateIndex` keeps one :class:`Partition` per
post language; this module is how a partition stores, indexes and searches its posts.

* A partition keeps its vectors and eligibility columns (country, region lock,
  creation time, alive) in numpy arrays by slot, plus an hnswlib inner-product graph
  once it holds ``exact_threshold`` posts; smaller partitions are searched exactly.
* Country and age eligibility are applied by over-fetching from the graph and filtering
  the results with numpy, not with hnswlib's ``filter=`` callback: that callback takes
  the GIL on every visited node, so concurrent searches would serialise. The fetch
  size is ``max(ef_search, fetch_factor * k) / eligible share``: the share of fetched
  posts the last search for the same country found eligible (a strided sample of the
  partition for a country's first search, or when the last found few). A fetch that
  comes back with fewer than ``k`` eligible posts is retried once, larger; when few
  posts are eligible, or the retry is short too, the partition is searched exactly
  over its eligible posts.
* Posts are added, updated and removed incrementally: ``add_items``, ``mark_deleted``
  and ``resize_index`` on the graph, slot reuse in the columns.
* Graph labels are the partition's slots, not post indices, so an index can be
  relabelled to another process's catalogue rows without touching the graphs.

A partition does no locking of its own: the index that owns it does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import hnswlib
import numpy as np
import numpy.typing as npt

from feedrank.core import huge_pages
from feedrank.core.feature_schema import (
    COUNTRY_VOCABULARY,
    LANGUAGE_VOCABULARY,
    BoolArray,
    FloatArray,
    IntArray,
)
from feedrank.models import ann_index_files

__all__ = ["EligibilityFilter", "Partition", "PostRows", "Progress", "RetrievalConfig", "top_k"]

Progress = Callable[[int], None]  # told how many posts were just indexed
SHORT_FETCH_GROWTH = 1.2  # a short fetch is retried this much larger than it fell short
TRUSTED_SHARE = 0.1  # a remembered eligible share below this is sampled again


@dataclass(frozen=True)
class RetrievalConfig:
    """Tunables of the candidate index (recorded when it is saved)."""

    dim: int = 64
    M: int = 24  # graph out-degree (hnswlib's M)
    ef_construction: int = 128
    ef_search: int = 400  # least search depth in eligible posts, whatever k
    fetch_factor: float = 1.05  # search depth in eligible posts per post asked for (see docs)
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
        # By the asking user's country: the share of the graph's nearest posts the last
        # search found eligible, which sizes the next search's over-fetch. Eligibility
        # (country lock, age window) drifts slowly, so the last search predicts the next
        # far better than a fresh sample of the whole partition, and costs nothing.
        self.eligible_share: dict[int, float] = {}

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
            with huge_pages.advised():  # the graph is read at random: see huge_pages
                self.graph.init_index(
                    max_elements=max(int(slots.size * self.config.growth_factor), 1),
                    ef_construction=self.config.ef_construction,
                    M=self.config.M,
                    random_seed=self.config.seed,
                )
            self.graph.set_ef(self.config.ef_search)
        needed = self.graph.element_count + slots.size
        if needed > self.graph.max_elements:
            with huge_pages.advised():
                self.graph.resize_index(int(needed * self.config.growth_factor))
        for start in range(0, slots.size, self.config.build_chunk):
            chunk = slots[start : start + self.config.build_chunk]
            # A reused slot's label is marked deleted: add_items replaces and revives it.
            self.graph.add_items(self.vectors[chunk], chunk, num_threads=self.config.build_threads)
            if progress is not None:
                progress(chunk.size)

    def eligible(
        self, slots: IntArray | slice, where: EligibilityFilter, *, alive: bool = True
    ) -> BoolArray:
        """Which ``slots`` ``where`` may be shown (``alive=False``: slots known to be
        live, which skips reading that column)."""
        created = self.created_ms[slots]
        eligible: BoolArray = (
            (created >= where.min_created_ms)
            & (created <= where.max_created_ms)
            & (~self.region_locked[slots] | (self.country[slots] == where.country))
        )
        if alive:
            eligible &= self.alive[slots]
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
        share = self.eligible_share.get(where.country)
        if share is None or share < TRUSTED_SHARE:
            # A first search, or one that found few eligible (a request's own age window,
            # say): sample rather than let one odd request send the next ones exact.
            share = self._sampled_share(where)
        depth = max(self.config.ef_search, self.config.fetch_factor * k)
        fetch = math.ceil(depth / max(share, 1.0 / self.live))
        for _ in range(2):  # a fetch that comes back short is retried once, larger
            if (
                share == 0.0
                or fetch >= self.live
                or fetch * self.config.ann_result_cost > self.used
            ):
                break  # exact is cheaper, or ANN would fetch it all
            try:
                labels, distances = self.graph.knn_query(vector, k=fetch, num_threads=1)
            except RuntimeError:  # hnswlib found fewer than ``fetch`` live posts
                break
            slots = labels[0].astype(np.int64)
            keep = self.eligible(slots, where, alive=False)  # hnswlib skips deleted labels
            kept = int(keep.sum())
            share = kept / fetch
            # Concurrent searches may race on this entry: any of their shares will do.
            self.eligible_share[where.country] = share
            if kept >= k:  # hnswlib answers nearest first: the first k kept are the best
                best = np.flatnonzero(keep)[:k]
                return self.post_index[slots[best]], (1.0 - distances[0][best]).astype(np.float32)
            fetch = math.ceil(fetch * SHORT_FETCH_GROWTH * k / max(kept, 1))
        return self.exact(vector, k, where)

    def _sampled_share(self, where: EligibilityFilter) -> float:
        """The eligible share of live posts on a strided sample of the partition."""
        sample = slice(0, self.used, max(1, self.used // self.config.sample_size))
        alive = int(self.alive[sample].sum())
        return int(self.eligible(sample, where).sum()) / max(alive, 1)

    def slot_columns(self) -> ann_index_files.SlotColumns:
        """Every slot handed out, dead ones included (post index -1), so a saved graph's
        labels still name the same slots once restored."""
        used = self.used
        alive = self.alive[:used].copy()
        return ann_index_files.SlotColumns(
            post_index=np.where(alive, self.post_index[:used], -1),
            vectors=self.vectors[:used],
            country=self.country[:used],
            region_locked=self.region_locked[:used],
            created_ms=self.created_ms[:used],
            alive=alive,
            graph=self.graph,
        )

    def restore(self, columns: ann_index_files.SlotColumns) -> None:
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
