"""The catalogue columns retrieval filters on, by row (language, country, …), as a snapshot.

To index posts a worker needs each post's language (the index partition), country and
region lock, and creation time (age); the model checks filter on the same columns.
The live :class:`CatalogueState` grows while a version loads, so a loader takes one
consistent copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

import numpy as np

from feedrank.catalogue import CatalogueState
from feedrank.core.feature_schema import BoolArray, IntArray


class IndexAttributes(TypedDict):
    """The keyword arguments of ``CandidateIndex.build`` and ``add`` besides the vectors."""

    languages: IntArray
    countries: IntArray
    region_locked: BoolArray
    created_ms: IntArray


@dataclass(frozen=True)
class Catalogue:
    language: IntArray
    country: IntArray
    region_locked: BoolArray
    created_ms: IntArray
    alive: BoolArray

    @classmethod
    def snapshot(cls, state: CatalogueState) -> Catalogue:
        """A copy of ``state``'s post columns as they are now."""
        with state.lock:
            return cls(
                language=np.array(state.post_column("language"), dtype=np.int64),
                country=np.array(state.post_column("country"), dtype=np.int64),
                region_locked=np.array(state.post_column("region_locked"), dtype=np.bool_),
                created_ms=np.array(state.post_column("created_ms"), dtype=np.int64),
                alive=np.array(state.post_column("alive"), dtype=np.bool_),
            )

    def __len__(self) -> int:
        return int(self.language.shape[0])

    def index_attributes(self, rows: IntArray) -> IndexAttributes:
        """What ``CandidateIndex.build`` and ``add`` take beside the vectors, for ``rows``."""
        return IndexAttributes(
            languages=self.language[rows],
            countries=self.country[rows],
            region_locked=self.region_locked[rows],
            created_ms=self.created_ms[rows],
        )

    def live_rows(self) -> IntArray:
        return np.flatnonzero(self.alive).astype(np.int64)
