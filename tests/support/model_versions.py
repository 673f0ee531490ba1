"""Small model versions for a simulated world, published to a real registry.

Tests use them to exercise hot swaps: the towers and ranker are small (few id
buckets, 16-d) so a version loads in a fraction of a second, and the post embeddings
come from the version's own post tower, as a learner would publish them.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from feedrank.catalogue import CatalogueState
from feedrank.core.feature_schema import PostFeatureBatch
from feedrank.explore.catalogue import Catalogue
from feedrank.features.store import InMemoryFeatureStore
from feedrank.models.ann_index import CandidateIndex, RetrievalConfig
from feedrank.models.ranker import RankerConfig, RankerModel
from feedrank.models.two_tower import TwoTowerConfig, TwoTowerModel
from feedrank.registry import ModelBundle, ModelRegistry, TrainingData, write_bundle
from feedrank.registry.bundle import INDEX_DIR
from feedrank.simulate.world import World, WorldConfig, generate_world

DIM = 16


def small_world(num_posts: int, num_users: int, start_ms: int, seed: int = 7) -> World:
    return generate_world(
        WorldConfig(
            num_users=num_users,
            num_creators=max(num_posts // 10, 1),
            num_posts=num_posts,
            seed=seed,
            start_ms=start_ms,
        )
    )


def all_posts(store: InMemoryFeatureStore, at_ms: int) -> PostFeatureBatch:
    return store.post_features(np.arange(store.num_posts, dtype=np.int64), at_ms)


def small_bundle(posts: PostFeatureBatch, seed: int) -> ModelBundle:
    """Towers and ranker of ``seed`` and the post tower's embedding of every post."""
    two_tower = TwoTowerModel(
        TwoTowerConfig(
            seed=seed,
            embedding_dim=DIM,
            user_id_buckets=256,
            post_id_buckets=1024,
            topic_dims=DIM // 2,
        )
    )
    ranker = RankerModel(
        RankerConfig(seed=seed, tower_dim=DIM, user_id_buckets=256, post_id_buckets=1024)
    )
    return ModelBundle(two_tower, ranker, posts.post_index, two_tower.encode_posts(posts))


def reversed_ranking(bundle: ModelBundle) -> ModelBundle:
    """``bundle`` with its ranker's scores reversed: the MLP head's last layer and the
    topic cross negated, so the logit is negated but for the position constant (a
    deliberately degraded version, as a real model file)."""
    ranker = copy.deepcopy(bundle.ranker)
    last = [module for module in ranker.head.modules() if isinstance(module, nn.Linear)][-1]
    with torch.no_grad():
        for parameter in (*last.parameters(), *ranker.topic_interest.parameters()):
            parameter.neg_()
    return dataclasses.replace(bundle, ranker=ranker)


def index_of(bundle: ModelBundle, state: CatalogueState) -> CandidateIndex:
    catalogue = Catalogue.snapshot(state)
    rows = bundle.post_index
    return CandidateIndex.build(
        rows,
        bundle.post_vectors,
        languages=catalogue.language[rows],
        countries=catalogue.country[rows],
        region_locked=catalogue.region_locked[rows],
        created_ms=catalogue.created_ms[rows],
        config=RetrievalConfig(dim=DIM, build_threads=1),
    )


def publish(
    registry: ModelRegistry,
    bundle: ModelBundle,
    *,
    index: CandidateIndex | None = None,
    tamper: Callable[[Path], None] | None = None,
) -> str:
    """Publish ``bundle`` (with ``index`` in ``ann/`` when given); ``tamper`` may change
    the files before they are digested (a forged version whose checksums match)."""

    def write(directory: Path) -> None:
        write_bundle(directory, bundle)
        if index is not None:
            index.save(directory / INDEX_DIR)
        if tamper is not None:
            tamper(directory)

    manifest = registry.publish(
        write, training=TrainingData(source="test", examples=1, start_ms=1, end_ms=2)
    )
    return manifest.version


def writable(path: Path) -> Path:
    """Undo the registry's read-only bit so a test can corrupt a published file."""
    path.chmod(0o644)
    return path
