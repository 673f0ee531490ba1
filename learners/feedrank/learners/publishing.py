"""Publish a learner's models, post embeddings and ANN index as one registry version."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from feedrank.learners.joint import JointModel
from feedrank.learners.posts import EmbeddingIndex, PostCatalogue
from feedrank.registry import ModelBundle, ModelRegistry, TrainingData, VersionManifest
from feedrank.registry.bundle import INDEX_DIR, write_bundle


def publish_version(
    registry: ModelRegistry,
    model: JointModel,
    catalogue: PostCatalogue,
    embeddings: EmbeddingIndex | None,
    *,
    training: TrainingData,
    metrics: Mapping[str, float],
    parent: str = "",
) -> VersionManifest:
    """Embed the catalogue (incrementally re-indexing moved posts) and publish it all."""
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

    finite = {name: float(value) for name, value in metrics.items() if math.isfinite(value)}
    return registry.publish(write, parent=parent, training=training, metrics=finite)
