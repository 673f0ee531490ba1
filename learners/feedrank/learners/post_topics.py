"""Post topics by post id, for examples whose decision did not log them.

Decisions log a post's topic weights with its features; older logs and replayed files
may not. A :class:`TopicLookup` answers for the posts it knows, by id, and says which
ones it does not know (their examples keep the logged, i.e. zero, topics):

* :class:`TopicTable`: a fixed table (a generated world's posts, ``world_topics``);
* :class:`CatalogueTopics`: a :class:`CatalogueState`, read live (posts it gains later
  are found too).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from feedrank.catalogue.state import CatalogueState
from feedrank.core.feature_schema import NUM_TOPICS, BoolArray, FloatArray, IntArray, post_id


class TopicLookup(Protocol):
    """Topic weights of posts, by id."""

    def topics_of(self, post_ids: Sequence[str]) -> tuple[FloatArray, BoolArray]:
        """(n, NUM_TOPICS) weights of each post, zero for the ones not known, and which
        ones are known."""
        ...


class TopicTable:
    """Fixed topic weights: row ``i`` of ``topics`` belongs to ``post_ids[i]``."""

    def __init__(self, post_ids: Sequence[str], topics: FloatArray) -> None:
        if topics.shape != (len(post_ids), NUM_TOPICS):
            raise ValueError(f"want ({len(post_ids)}, {NUM_TOPICS}) topics, got {topics.shape}")
        self._row_of = {identifier: row for row, identifier in enumerate(post_ids)}
        if len(self._row_of) != len(post_ids):
            raise ValueError("a post id appears twice in the topic table")
        self._topics = np.asarray(topics, dtype=np.float32)

    @classmethod
    def of_generated_world(cls, topics: FloatArray) -> TopicTable:
        """A generated world's topics by row: its post ``row`` is ``post_id(row)``."""
        return cls([post_id(row) for row in range(topics.shape[0])], topics)

    def topics_of(self, post_ids: Sequence[str]) -> tuple[FloatArray, BoolArray]:
        rows = np.array([self._row_of.get(item, -1) for item in post_ids], dtype=np.int64)
        return _gather(self._topics, rows)


class CatalogueTopics:
    """The topics a :class:`CatalogueState` holds now (deleted posts included)."""

    def __init__(self, catalogue: CatalogueState) -> None:
        self.catalogue = catalogue

    def topics_of(self, post_ids: Sequence[str]) -> tuple[FloatArray, BoolArray]:
        catalogue = self.catalogue
        with catalogue.lock:
            found = [catalogue.post_row(item) for item in post_ids]
            rows = np.array([-1 if row is None else row for row in found], dtype=np.int64)
            return _gather(catalogue.post_column("topics"), rows)


def with_looked_up_topics(
    post_ids: Sequence[str],
    logged: FloatArray,
    has_logged: BoolArray,
    lookup: TopicLookup | FloatArray | None,
) -> FloatArray:
    """``logged`` topics, with the lookup's for the posts that logged none and it knows.

    ``lookup`` may also be a plain array: a generated world's topics by row (ids
    ``p<row>``), as callers from before string ids pass it."""
    missing = np.flatnonzero(~has_logged)
    if lookup is None or missing.size == 0:
        return logged
    if isinstance(lookup, np.ndarray):
        lookup = TopicTable.of_generated_world(lookup)
    found, known = lookup.topics_of([post_ids[row] for row in missing.tolist()])
    topics = logged.copy()
    topics[missing[known]] = found[known]
    return topics


def _gather(table: FloatArray, rows: IntArray) -> tuple[FloatArray, BoolArray]:
    known: BoolArray = rows >= 0
    topics = np.zeros((rows.shape[0], NUM_TOPICS), dtype=np.float32)
    topics[known] = table[rows[known]]
    return topics, known
