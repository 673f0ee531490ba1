"""What ``feedrank train`` and ``feedrank learn`` start from: models, the catalogue's
posts, and the batch trainer's settings."""

from __future__ import annotations

import numpy as np

from feedrank.catalogue import CatalogueState
from feedrank.core.settings import Settings
from feedrank.features.store import InMemoryFeatureStore
from feedrank.learners.batch.trainer import TrainerConfig
from feedrank.learners.joint import JointModel, StepConfig
from feedrank.learners.post_ids import LEARNER_POST_IDS, PostIds
from feedrank.learners.posts import PostCatalogue
from feedrank.models.ranker import RankerConfig
from feedrank.models.two_tower import TwoTowerConfig
from feedrank.registry import ModelRegistry, read_bundle


def catalogue_posts(
    catalogue: CatalogueState,
    at_ms: int,
    post_ids: PostIds = LEARNER_POST_IDS,
    store: InMemoryFeatureStore | None = None,
) -> PostCatalogue:
    """Every live post of ``catalogue`` with its features as of ``at_ms``, by its row in
    ``post_ids``: the posts a published version embeds and indexes beside those its
    examples saw. ``store`` (over ``catalogue``) brings its engagement counts; by
    default a new store, which has seen none."""
    posts_by_id = PostCatalogue(post_ids)
    rows = catalogue.live_rows()
    if rows.size == 0:
        return posts_by_id
    store = store or InMemoryFeatureStore(catalogue)
    posts = store.post_features(rows, at_ms)
    created_ms = np.asarray(catalogue.post_column("created_ms")[rows], dtype=np.int64)
    posts_by_id.seed(posts, store.post_ids(rows), created_ms)
    return posts_by_id


def model_configs(settings: Settings, seed: int = 0) -> tuple[TwoTowerConfig, RankerConfig]:
    """Configs of a freshly made model (id buckets from the learner settings)."""
    learner = settings.learner
    two_tower = TwoTowerConfig(
        user_id_buckets=learner.user_id_buckets, post_id_buckets=learner.post_id_buckets, seed=seed
    )
    ranker = RankerConfig(
        tower_dim=two_tower.embedding_dim,
        user_id_buckets=learner.user_id_buckets,
        post_id_buckets=learner.post_id_buckets,
        time_context=learner.time_context,
        seed=seed,
    )
    return two_tower, ranker


def starting_model(
    settings: Settings, registry: ModelRegistry, step: StepConfig
) -> tuple[JointModel, str]:
    """The latest registry version (and its name) or, before any, a fresh model ('').

    A fresh model has the world's seed, as the explore service's initial model does, so
    before any version the learner starts from exactly what is serving.
    """
    latest = registry.latest()
    if latest is not None:
        bundle = read_bundle(registry.open_verified(latest.version))
        return JointModel(bundle.two_tower, bundle.ranker, step), latest.version
    two_tower, ranker = model_configs(settings, settings.world.seed)
    return JointModel.new(two_tower, ranker, step), ""


def trainer_config(
    settings: Settings,
    *,
    batch_size: int | None = None,
    max_epochs: int | None = None,
    learning_rate: float | None = None,
    negative_rate: float = 1.0,
    recall_k: int = 50,
    seed: int = 0,
) -> TrainerConfig:
    """The batch trainer's config from the learner settings; a value given here (not
    None) wins over the setting."""
    learner = settings.learner
    return TrainerConfig(
        batch_size=batch_size or learner.batch_size,
        max_epochs=max_epochs or learner.max_epochs,
        patience=learner.patience,
        learning_rate=learning_rate or learner.batch_learning_rate,
        lr_decay=learner.lr_decay,
        weight_decay=learner.weight_decay,
        validation_share=learner.validation_share,
        negative_rate=negative_rate,
        recall_k=recall_k,
        seed=seed,
    )
