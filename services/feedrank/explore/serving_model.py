"""One servable model version: both towers, the ranker and the ANN index, together.

They are loaded, swapped and freed as one object, so a request can never mix the
user tower of one version with the index of another. A registry version brings a
trained :class:`TwoTowerModel` and :class:`RankerModel`; before the first one,
:func:`initial_serving_model` serves the cold-start policy (``cold_start``), which
offers the same interfaces (:class:`RetrievalTowers`, :class:`CandidateRanker`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from rich.progress import Progress
from torch import nn

from feedrank.core.feature_schema import FloatArray, PostFeatureBatch, UserFeatures
from feedrank.core.settings import ExploreSettings
from feedrank.explore.cold_start import ColdStartRanker, ColdStartTowers, CreationTimes
from feedrank.models.ann_index import CandidateIndex, RetrievalConfig


class RetrievalTowers(Protocol):
    """What serving asks of the two towers (``TwoTowerModel``, ``ColdStartTowers``)."""

    def encode_users(self, users: Sequence[UserFeatures]) -> FloatArray:
        """User vectors, shape (n, dim), for inner-product search over post vectors."""
        ...

    def encode_posts(self, posts: PostFeatureBatch) -> FloatArray:
        """Post vectors, shape (n, dim), as the ANN index holds them."""
        ...


class CandidateRanker(Protocol):
    """What serving asks of the ranker (``RankerModel``, ``ColdStartRanker``)."""

    def score_retrieved(
        self,
        user: UserFeatures,
        posts: PostFeatureBatch,
        tower_similarity: npt.NDArray[np.floating[Any]],
        request_time_ms: int,
        *,
        surface: str = "",
    ) -> npt.NDArray[np.float64]:
        """Scores in (0, 1), shape (n,), of ``user`` and each post (higher first);
        ``tower_similarity`` is the user vector's inner product with each post's, as
        retrieval found it."""
        ...


@dataclass(frozen=True)
class ServingModel:
    version: str
    two_tower: RetrievalTowers
    ranker: CandidateRanker
    index: CandidateIndex  # also holds each post's vector (the post tower's output)

    def __post_init__(self) -> None:
        # Served models never train: eval mode once, instead of per request.
        for part in (self.two_tower, self.ranker):
            if isinstance(part, nn.Module):
                part.eval()


def index_catalogue(
    two_tower: RetrievalTowers,
    posts: PostFeatureBatch,
    created_ms: npt.NDArray[np.int64],
    *,
    retrieval: RetrievalConfig | None = None,
    show_progress: bool = False,
) -> CandidateIndex:
    """Embed ``posts`` with the post tower and build the ANN index over them."""
    vectors = two_tower.encode_posts(posts)
    config = retrieval or RetrievalConfig(dim=vectors.shape[1])
    with Progress(disable=not show_progress, transient=True) as progress:
        task = progress.add_task("indexing posts", total=len(posts))
        return CandidateIndex.build(
            posts.post_index,
            vectors,
            languages=posts.language,
            countries=posts.country,
            region_locked=posts.region_locked,
            created_ms=created_ms,
            config=config,
            progress=lambda done: progress.advance(task, done),
        )


def initial_serving_model(
    posts: PostFeatureBatch,
    created_ms: npt.NDArray[np.int64],
    *,
    settings: ExploreSettings,
    creation_times: CreationTimes,
    version: str = "v0-init",
    show_progress: bool = False,
) -> ServingModel:
    """The cold-start policy over ``posts``: what serves before a plan names a registry
    version (topic match, freshness and popularity; see ``cold_start``).

    ``creation_times`` gives ``created_ms`` of any catalogue row: the catalogue indexer
    embeds posts that arrive later with the same post "tower"."""
    towers = ColdStartTowers(
        settings.cold_start,
        max_post_age_days=settings.max_post_age_days,
        creation_times=creation_times,
    )
    ranker = ColdStartRanker(settings.cold_start)
    index = index_catalogue(towers, posts, created_ms, show_progress=show_progress)
    return ServingModel(version, towers, ranker, index)
