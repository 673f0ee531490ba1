"""The catalogue columns retrieval filters on, by post index (language, country, …).

A model version ships post embeddings only; to index them a worker needs each post's
language (the index partition), country and region lock, and creation time (age).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from feedrank.core.features.schema import BoolArray, IntArray
from feedrank.core.world import World


@dataclass(frozen=True)
class Catalogue:
    language: IntArray
    country: IntArray
    region_locked: BoolArray
    created_ms: IntArray

    @classmethod
    def from_world(cls, world: World) -> Catalogue:
        posts = world.posts
        return cls(
            language=np.asarray(posts.language, dtype=np.int64),
            country=np.asarray(posts.country, dtype=np.int64),
            region_locked=np.asarray(posts.region_locked, dtype=np.bool_),
            created_ms=np.asarray(posts.created_ms, dtype=np.int64),
        )

    def __len__(self) -> int:
        return int(self.language.shape[0])
