"""A learner process's post rows: app post ids interned to dense ints, first seen first.

Apps name posts by any non-empty string. A learner keeps per-post state in arrays (the
post catalogue, the post embeddings it indexes), so it interns each id it meets into
the next free row; rows are never reused. Rows mean something inside one process only:
checkpoints and registry versions store the ids, and the models see the id's stable
``post_key``, never the row. Every part of one learner process (example batches, the
post catalogue, checkpoints, the embeddings it publishes) shares
:data:`LEARNER_POST_IDS`, so a row names the same post throughout.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

import numpy as np

from feedrank.core.feature_schema import IntArray


class PostIds:
    """Post ids interned to rows ``0 .. len-1`` in the order first seen; thread-safe."""

    def __init__(self, post_ids: Iterable[str] = ()) -> None:
        self._ids: list[str] = []
        self._rows: dict[str, int] = {}
        self._lock = threading.Lock()
        for post_id in post_ids:
            self.intern(post_id)

    def intern(self, post_id: str) -> int:
        """The row of ``post_id``, added when new; ValueError for an empty id."""
        row = self._rows.get(post_id)
        if row is not None:
            return row
        if not post_id:
            raise ValueError("a post id must be a non-empty string")
        with self._lock:
            row = self._rows.get(post_id)
            if row is None:
                row = len(self._ids)
                self._ids.append(post_id)
                self._rows[post_id] = row
            return row

    def rows(self, post_ids: Sequence[str]) -> IntArray:
        """The row of each id (new ones interned), in order."""
        return np.fromiter(
            (self.intern(post_id) for post_id in post_ids), dtype=np.int64, count=len(post_ids)
        )

    def post_row(self, post_id: str) -> int | None:
        """The row of ``post_id``, or None for an id never interned."""
        return self._rows.get(post_id)

    def post_id(self, row: int) -> str:
        return self._ids[row]

    def ids(self, rows: Iterable[int] | IntArray) -> list[str]:
        """The id of each row, in order; IndexError for a row never handed out."""
        ids = self._ids
        listed: list[int] = rows.tolist() if isinstance(rows, np.ndarray) else list(rows)
        if listed and min(listed) < 0:
            raise IndexError(f"post rows are >= 0, got {min(listed)}")
        return [ids[row] for row in listed]

    def __len__(self) -> int:
        return len(self._ids)


LEARNER_POST_IDS = PostIds()
"""This process's interner: every learner part uses it unless handed another."""
