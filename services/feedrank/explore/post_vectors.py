"""The post tower's output by catalogue row, growing as an app adds posts.

The ranker reads the vectors of ~1,000 candidates per request; the catalogue feed's
thread writes the vectors of new and changed posts. Readers take no lock: they index
the array current when they read it, and a post's vector is written before the post
enters the ANN index, so every row a search returns is present. Growing copies into a
larger array and switches to it in one assignment.
"""

from __future__ import annotations

import threading

import numpy as np

from feedrank.core.feature_schema import FloatArray, IntArray

GROWTH = 1.5


class PostVectorTable:
    """Vectors by row: rows never written read as zeros."""

    def __init__(self, vectors: FloatArray) -> None:
        if vectors.ndim != 2:
            raise ValueError(f"post vectors must be (posts, dim), not {vectors.shape}")
        self._vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self._size = int(vectors.shape[0])
        self._lock = threading.Lock()

    @classmethod
    def empty(cls, dim: int) -> PostVectorTable:
        return cls(np.zeros((0, dim), dtype=np.float32))

    @property
    def dim(self) -> int:
        return int(self._vectors.shape[1])

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, rows: IntArray) -> FloatArray:
        vectors: FloatArray = self._vectors[rows]
        return vectors

    def put(self, rows: IntArray, vectors: FloatArray) -> None:
        """Write ``vectors`` at ``rows`` (growing the table past its end as needed)."""
        if rows.size == 0:
            return
        if vectors.shape != (rows.size, self.dim):
            raise ValueError(f"{vectors.shape} vectors for {rows.size} rows of dim {self.dim}")
        with self._lock:
            needed = int(rows.max()) + 1
            current = self._vectors
            if needed > current.shape[0]:
                capacity = max(needed, int(current.shape[0] * GROWTH))
                grown = np.zeros((capacity, self.dim), dtype=np.float32)
                grown[: current.shape[0]] = current
                grown[rows] = vectors
                self._vectors = grown  # readers switch to the grown array here
            else:
                current[rows] = vectors
            self._size = max(self._size, needed)
