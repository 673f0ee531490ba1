"""The files of one model version: both towers, the ranker and the post embeddings.

They are written and read together, so a version can never pair one version's user
tower with another's post embeddings. The ANN index (``ann/``, written by
``CandidateIndex.save``) is optional: a reader without it rebuilds the index from the
embeddings. Everything is safetensors, JSON or numpy/hnswlib data; nothing is unpickled.

``post_ids.json`` names the embedded posts by their app ids, in embedding order: rows
are local to the learner that wrote them, ids are what a serving process maps to its
own rows. A bundle without it is from before string ids and names post ``p<row>``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from feedrank.core.feature_schema import post_id
from feedrank.models.ranker import RankerModel
from feedrank.models.serialization import (
    ModelFormatError,
    load_ranker,
    load_two_tower,
    save_model,
)
from feedrank.models.two_tower import TwoTowerModel

TWO_TOWER_FILE = "two_tower.safetensors"
RANKER_FILE = "ranker.safetensors"
EMBEDDINGS_FILE = "post_embeddings.safetensors"
POST_IDS_FILE = "post_ids.json"
INDEX_DIR = "ann"


@dataclass(frozen=True)
class ModelBundle:
    two_tower: TwoTowerModel
    ranker: RankerModel
    post_index: npt.NDArray[np.int64]  # catalogue rows of the embedded posts
    post_vectors: npt.NDArray[np.float32]  # (posts, embedding_dim), the post tower's output
    post_ids: tuple[str, ...] | None = None  # app ids of the embedded posts, same order

    def __post_init__(self) -> None:
        dim = self.two_tower.config.embedding_dim
        if self.ranker.config.tower_dim != dim:
            raise ModelFormatError(
                f"ranker expects {self.ranker.config.tower_dim}-d tower vectors, "
                f"the two-tower gives {dim}"
            )
        if self.post_vectors.ndim != 2 or self.post_vectors.shape[1] != dim:
            raise ModelFormatError(f"post embeddings must be (posts, {dim})")
        if self.post_index.shape != (self.post_vectors.shape[0],):
            raise ModelFormatError("one post index per embedding row is required")
        if self.post_ids is not None and len(self.post_ids) != self.post_index.shape[0]:
            raise ModelFormatError("one post id per embedding row is required")

    def ids(self) -> tuple[str, ...]:
        """The embedded posts' ids (``p<row>`` for a bundle written before string ids)."""
        if self.post_ids is not None:
            return self.post_ids
        return tuple(post_id(int(row)) for row in self.post_index)


def write_bundle(directory: Path, bundle: ModelBundle) -> None:
    save_model(bundle.two_tower, directory / TWO_TOWER_FILE)
    save_model(bundle.ranker, directory / RANKER_FILE)
    save_file(
        {
            "post_index": np.ascontiguousarray(bundle.post_index, dtype=np.int64),
            "post_vectors": np.ascontiguousarray(bundle.post_vectors, dtype=np.float32),
        },
        str(directory / EMBEDDINGS_FILE),
        metadata={"format": "feedrank-embeddings/1"},
    )
    if bundle.post_ids is not None:
        (directory / POST_IDS_FILE).write_text(json.dumps(list(bundle.post_ids)))


def read_bundle(directory: Path) -> ModelBundle:
    """The bundle in ``directory`` (verify it through the registry first)."""
    two_tower = load_two_tower(directory / TWO_TOWER_FILE)
    ranker = load_ranker(directory / RANKER_FILE)
    try:
        arrays = load_file(str(directory / EMBEDDINGS_FILE))
    except (SafetensorError, OSError) as error:
        raise ModelFormatError(f"{directory / EMBEDDINGS_FILE}: unreadable: {error}") from error
    post_index, post_vectors = arrays.get("post_index"), arrays.get("post_vectors")
    if post_index is None or post_vectors is None or len(arrays) != 2:
        raise ModelFormatError(f"{directory / EMBEDDINGS_FILE}: want post_index and post_vectors")
    if post_index.dtype != np.int64 or post_vectors.dtype != np.float32:
        raise ModelFormatError(f"{directory / EMBEDDINGS_FILE}: wrong dtypes")
    if not np.isfinite(post_vectors).all():
        raise ModelFormatError(f"{directory / EMBEDDINGS_FILE}: NaN or infinite embeddings")
    return ModelBundle(two_tower, ranker, post_index, post_vectors, _read_post_ids(directory))


def _read_post_ids(directory: Path) -> tuple[str, ...] | None:
    path = directory / POST_IDS_FILE
    if not path.exists():
        return None
    try:
        ids = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFormatError(f"{path}: unreadable: {error}") from error
    if not isinstance(ids, list) or not all(isinstance(item, str) and item for item in ids):
        raise ModelFormatError(f"{path}: want a JSON list of non-empty post ids")
    if len(set(ids)) != len(ids):
        raise ModelFormatError(f"{path}: a post id appears twice")
    return tuple(ids)
