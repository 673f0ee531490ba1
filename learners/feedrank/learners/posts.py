"""The posts a learner knows, their embeddings and the ANN index shipped with a version.

:class:`PostCatalogue` keeps the latest logged features of every post seen in examples
(or seeded from a feature store), one slot per post, by the post's row in the learner's
:class:`PostIds`; it saves the ids with the features, so a restarted learner re-interns
them. :class:`EmbeddingIndex` embeds the catalogue with the current post tower and
updates a :class:`CandidateIndex` incrementally: only new posts and posts whose vector
moved by more than a tolerance (cosine distance) are re-added. The result goes into a
registry version with the models, the posts named by the learner's rows and by their
ids (see :func:`publish_version`): a server maps the ids to its own rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from safetensors.numpy import load_file, save_file

from feedrank.catalogue import CatalogueState
from feedrank.catalogue.state import UNKNOWN_COUNTRY
from feedrank.core.feature_schema import (
    COUNTRY_VOCABULARY,
    LANGUAGE_VOCABULARY,
    IntArray,
    PostFeatureBatch,
    post_id,
    post_keys,
)
from feedrank.core.time_units import HOUR_MS
from feedrank.features.store import InMemoryFeatureStore
from feedrank.learners.post_ids import LEARNER_POST_IDS, PostIds
from feedrank.models.ann_index import CandidateIndex, RetrievalConfig
from feedrank.models.two_tower import TwoTowerModel

FloatArray = npt.NDArray[np.float32]
_COLUMNS = tuple(item.name for item in fields(PostFeatureBatch) if item.name != "as_of_ms")
_ID_BYTES, _ID_ENDS = "post_id_utf8", "post_id_ends"  # the ids, saved as one UTF-8 blob


class PostCatalogue:
    """Latest features per post (by its row in ``post_ids``), as growable columns."""

    def __init__(self, post_ids: PostIds = LEARNER_POST_IDS) -> None:
        self.post_ids = post_ids  # the interner the batches' post_index rows come from
        self._slot_of = np.full(0, -1, dtype=np.int64)
        self._columns: dict[str, npt.NDArray[np.generic]] = {}
        self._created_ms = np.empty(0, dtype=np.int64)
        self._size = 0
        self.as_of_ms = 0

    def __len__(self) -> int:
        return self._size

    def update(self, posts: PostFeatureBatch, decision_time_ms: IntArray) -> None:
        """Take these rows as the newest features of their posts (later rows win)."""
        if len(posts) == 0:
            return
        index = posts.post_index
        last = len(index) - 1 - np.unique(index[::-1], return_index=True)[1]
        rows = np.sort(last)
        posts_index = index[rows]
        self._grow_lookup(int(posts_index.max()) + 1)
        slots = self._slot_of[posts_index]
        new = slots < 0
        slots[new] = np.arange(self._size, self._size + int(new.sum()))
        self._slot_of[posts_index[new]] = slots[new]
        self._reserve(self._size + int(new.sum()), posts)
        self._size += int(new.sum())
        for name in _COLUMNS:
            self._columns[name][slots] = getattr(posts, name)[rows]
        age_ms = (posts.age_hours[rows].astype(np.float64) * HOUR_MS).astype(np.int64)
        self._created_ms[slots] = decision_time_ms[rows] - age_ms
        self.as_of_ms = max(self.as_of_ms, int(decision_time_ms.max()))

    def seed(self, posts: PostFeatureBatch, ids: Sequence[str], created_ms: IntArray) -> None:
        """Start from a feature store's catalogue (every post, with its id and creation
        time), so versions index all posts, not only those already shown. The store's
        rows are its own: the posts are re-keyed by ``ids``."""
        posts = replace(posts, post_index=self.post_ids.rows(ids))
        self.update(posts, np.full(len(posts), posts.as_of_ms, dtype=np.int64))
        self._created_ms[self._slot_of[posts.post_index]] = created_ms

    def ids(self) -> list[str]:
        """The id of every known post, in the order of :meth:`features`."""
        return self.post_ids.ids(self._columns["post_index"][: self._size] if self._size else [])

    def features(self) -> PostFeatureBatch:
        """Every known post's latest features (ages as logged)."""
        if not self._columns:  # nothing seen yet (a new deployment's first version)
            empty = InMemoryFeatureStore(CatalogueState())
            return empty.post_features(np.empty(0, dtype=np.int64), self.as_of_ms)
        size = self._size
        columns: dict[str, Any] = {name: self._columns[name][:size] for name in _COLUMNS}
        return PostFeatureBatch(**columns, as_of_ms=self.as_of_ms)

    @property
    def created_ms(self) -> IntArray:
        return self._created_ms[: self._size]

    def save(self, path: Path) -> None:
        as_of = np.array([self.as_of_ms], dtype=np.int64)
        if self._size == 0:
            save_file({"as_of_ms": as_of}, str(path))
            return
        arrays = {
            name: np.ascontiguousarray(self._columns[name][: self._size]) for name in _COLUMNS
        }
        arrays[_ID_BYTES], arrays[_ID_ENDS] = _pack_ids(self.ids())
        arrays["created_ms"] = np.ascontiguousarray(self.created_ms)
        arrays["as_of_ms"] = as_of
        save_file(arrays, str(path))

    @classmethod
    def load(cls, path: Path, post_ids: PostIds = LEARNER_POST_IDS) -> PostCatalogue:
        """A catalogue :meth:`save` wrote, its ids interned into ``post_ids``.

        A file from before string ids has no ids: its rows were the posts ``p<row>``."""
        arrays = load_file(str(path))
        catalogue = cls(post_ids)
        if "post_index" in arrays:
            if _ID_BYTES in arrays:
                ids = _unpack_ids(arrays[_ID_BYTES], arrays[_ID_ENDS])
            else:
                ids = [post_id(row) for row in arrays["post_index"].tolist()]
            columns = {name: arrays[name] for name in _COLUMNS if name in arrays}
            columns["post_index"] = post_ids.rows(ids)
            columns["post_key"] = post_keys(ids)
            posts = PostFeatureBatch(**columns, as_of_ms=int(arrays["as_of_ms"][0]))
            age_ms = (posts.age_hours.astype(np.float64) * HOUR_MS).astype(np.int64)
            catalogue.update(posts, arrays["created_ms"] + age_ms)
        catalogue.as_of_ms = int(arrays["as_of_ms"][0])
        return catalogue

    def _grow_lookup(self, size: int) -> None:
        if size > self._slot_of.size:
            grown = np.full(max(size, 2 * self._slot_of.size), -1, dtype=np.int64)
            grown[: self._slot_of.size] = self._slot_of
            self._slot_of = grown

    def _reserve(self, capacity: int, like: PostFeatureBatch) -> None:
        current = self._created_ms.shape[0]
        if capacity <= current:
            return
        size = max(capacity, 2 * current, 1024)
        for name in _COLUMNS:
            source = getattr(like, name)
            grown = np.zeros((size, *source.shape[1:]), dtype=source.dtype)
            if name in self._columns:
                grown[:current] = self._columns[name][:current]
            self._columns[name] = grown
        created = np.zeros(size, dtype=np.int64)
        created[:current] = self._created_ms[:current]
        self._created_ms = created


def _pack_ids(ids: Sequence[str]) -> tuple[npt.NDArray[np.uint8], IntArray]:
    """Ids as one UTF-8 blob and the end offset of each (safetensors holds arrays only)."""
    encoded = [identifier.encode() for identifier in ids]
    ends = np.cumsum([len(item) for item in encoded], dtype=np.int64)
    return np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(), ends


def _unpack_ids(blob: npt.NDArray[np.uint8], ends: IntArray) -> list[str]:
    if ends.size == 0:
        return []
    data = blob.tobytes()
    starts = [0, *ends[:-1].tolist()]
    return [data[start:end].decode() for start, end in zip(starts, ends.tolist(), strict=True)]


@dataclass
class EmbeddingRefresh:
    post_index: IntArray  # the learner's rows of the embedded posts (the ANN index labels)
    post_ids: tuple[str, ...]  # their ids, in the same order
    vectors: FloatArray
    changed: int  # posts (re-)added to the index


def _index_countries(codes: IntArray) -> IntArray:
    """The index's countries of the models' country codes. The models' "other" row (any
    country past the schema's, the catalogue's unknown ``ZZ`` among them) has no single
    code, so it is filed under ``ZZ``; explore rewrites such a post's country from its
    own catalogue when it loads the version (model_loader._complete)."""
    countries = codes.copy()
    countries[codes >= COUNTRY_VOCABULARY.seeded] = COUNTRY_VOCABULARY.intern(UNKNOWN_COUNTRY)
    return countries


class EmbeddingIndex:
    """Post vectors and the ANN index over them, updated incrementally."""

    def __init__(self, dim: int, tolerance: float = 1e-3) -> None:
        self.index = CandidateIndex(RetrievalConfig(dim=dim))
        self.tolerance = tolerance
        self._vectors: dict[int, FloatArray] = {}

    def refresh(self, two_tower: TwoTowerModel, catalogue: PostCatalogue) -> EmbeddingRefresh:
        """Embed every known post; re-index the new and the moved ones."""
        posts = catalogue.features()
        vectors = two_tower.encode_posts(posts)
        previous = np.zeros_like(vectors)
        for row, post in enumerate(posts.post_index.tolist()):
            known = self._vectors.get(post)
            if known is not None:
                previous[row] = known
        moved = 1.0 - (previous * vectors).sum(axis=1) > self.tolerance
        # A saved index holds the schema's languages only: a post whose language is
        # past them ("other" to the models) is left to explore, which adds it under its
        # own language when it loads the version (model_loader._complete).
        rows = np.flatnonzero(moved & (posts.language < LANGUAGE_VOCABULARY.seeded))
        if rows.size:
            self.index.add(
                posts.post_index[rows],
                vectors[rows],
                languages=posts.language[rows],
                countries=_index_countries(posts.country[rows]),
                region_locked=posts.region_locked[rows],
                created_ms=catalogue.created_ms[rows],
            )
            for row in rows.tolist():
                self._vectors[int(posts.post_index[row])] = vectors[row]
        return EmbeddingRefresh(
            posts.post_index.copy(), tuple(catalogue.ids()), vectors, int(rows.size)
        )
