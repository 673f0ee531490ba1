"""One servable model version: both towers, the ranker and the ANN index, together.

They are loaded, swapped and freed as one object, so a request can never mix the
user tower of one version with the index of another.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from rich.progress import Progress

from feedrank.core.features.schema import PostFeatureBatch
from feedrank.core.models.ranker import RankerConfig, RankerModel
from feedrank.core.models.two_tower import TwoTowerConfig, TwoTowerModel
from feedrank.explore.post_vectors import PostVectorTable
from feedrank.explore.retrieval import CandidateIndex, RetrievalConfig


@dataclass(frozen=True)
class ServingModel:
    version: str
    two_tower: TwoTowerModel
    ranker: RankerModel
    index: CandidateIndex
    post_vectors: PostVectorTable  # the post tower's output by catalogue row

    def __post_init__(self) -> None:
        # Served models never train: eval mode once, instead of per request.
        self.two_tower.eval()
        self.ranker.eval()


def index_catalogue(
    two_tower: TwoTowerModel,
    posts: PostFeatureBatch,
    created_ms: npt.NDArray[np.int64],
    *,
    retrieval: RetrievalConfig | None = None,
    show_progress: bool = False,
) -> tuple[CandidateIndex, PostVectorTable]:
    """Embed ``posts`` with the post tower and build the ANN index over them."""
    vectors = two_tower.encode_posts(posts)
    config = retrieval or RetrievalConfig(dim=vectors.shape[1])
    with Progress(disable=not show_progress, transient=True) as progress:
        task = progress.add_task("indexing posts", total=len(posts))
        index = CandidateIndex.build(
            posts.post_index,
            vectors,
            languages=posts.language,
            countries=posts.country,
            region_locked=posts.region_locked,
            created_ms=created_ms,
            config=config,
            progress=lambda done: progress.advance(task, done),
        )
    table = PostVectorTable.empty(vectors.shape[1])
    table.put(posts.post_index, vectors)
    return index, table


def initial_serving_model(
    posts: PostFeatureBatch,
    created_ms: npt.NDArray[np.int64],
    *,
    version: str = "v0-init",
    seed: int = 0,
    time_context: bool = True,
    show_progress: bool = False,
) -> ServingModel:
    """A seeded, untrained model: what serves before the first registry version exists.

    Its retrieval and ranking run on features only (content, topics, language, …);
    the learners replace it with trained versions through the registry.
    """
    two_tower = TwoTowerModel(TwoTowerConfig(seed=seed))
    ranker_config = RankerConfig(
        seed=seed, tower_dim=two_tower.config.embedding_dim, time_context=time_context
    )
    ranker = RankerModel(ranker_config)
    index, vectors = index_catalogue(two_tower, posts, created_ms, show_progress=show_progress)
    return ServingModel(version, two_tower, ranker, index, vectors)
