"""Publish a learner's models, post embeddings and ANN index as one registry version."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path

from feedrank.learners.joint import JointModel
from feedrank.learners.posts import EmbeddingIndex, PostCatalogue
from feedrank.registry import ModelBundle, ModelRegistry, TrainingData, VersionManifest
from feedrank.registry.bundle import INDEX_DIR, write_bundle

log = logging.getLogger("feedrank.learners")


def publish_version(
    registry: ModelRegistry,
    model: JointModel,
    catalogue: PostCatalogue,
    embeddings: EmbeddingIndex | None,
    *,
    training: TrainingData,
    metrics: Mapping[str, float],
    parent: str = "",
    judge: Callable[[ModelBundle], Mapping[str, float]] | None = None,
) -> VersionManifest:
    """Embed the catalogue (incrementally re-indexing moved posts) and publish it all,
    with ``judge``'s metrics of the bundle (its off-policy estimate) beside ``metrics``;
    a judge that fails is logged and the version published without them."""
    index = embeddings or EmbeddingIndex(model.two_tower.config.embedding_dim)
    refreshed = index.refresh(model.two_tower, catalogue)
    bundle = ModelBundle(
        model.two_tower,
        model.ranker,
        refreshed.post_index,  # the learner's rows: the shipped index's labels
        refreshed.vectors,
        post_ids=refreshed.post_ids,  # what a server maps to its own rows
    )

    def write(directory: Path) -> None:
        write_bundle(directory, bundle)
        if len(catalogue):
            index.index.save(directory / INDEX_DIR)

    judged: Mapping[str, float] = {}
    if judge is not None:
        try:
            judged = judge(bundle)
        except Exception:  # an estimate is advice: it never blocks a publish (logged)
            log.exception("the off-policy estimate of the new version failed")
    combined = {**metrics, **judged}
    finite = {name: float(value) for name, value in combined.items() if math.isfinite(value)}
    return registry.publish(write, parent=parent, training=training, metrics=finite)
