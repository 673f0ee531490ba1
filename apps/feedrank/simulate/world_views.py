"""The simulated world as the learners and the benchmarks read it.

The stack's processes all generate the same world from the settings (same seed, size
and start); these views give its posts' topics by id and its catalogue's posts in the
learners' types, for training on simulated history and for measuring on it.
"""

from __future__ import annotations

import numpy as np

from feedrank.core.settings import Settings
from feedrank.learners.bootstrap import catalogue_posts
from feedrank.learners.post_ids import LEARNER_POST_IDS, PostIds
from feedrank.learners.post_topics import TopicLookup, TopicTable
from feedrank.learners.posts import PostCatalogue
from feedrank.simulate.world import World, WorldConfig, generate_world, world_config
from feedrank.simulate.world.catalogue import catalogue_from_world


def local_world(settings: Settings, start_ms: int | None = None) -> World:
    """The simulated world the local stack serves (same seed, same posts)."""
    return generate_world(world_config(settings.world, start_ms or WorldConfig().start_ms))


def world_catalogue(
    world: World, at_ms: int, post_ids: PostIds = LEARNER_POST_IDS
) -> PostCatalogue:
    """Every post of the world's observable catalogue as of ``at_ms``, by its row in
    ``post_ids``."""
    return catalogue_posts(catalogue_from_world(world), at_ms, post_ids)


def world_topics(world: World) -> TopicLookup:
    """Post topics by post id: static attributes older decision logs do not carry."""
    return TopicTable.of_generated_world(np.asarray(world.posts.topics, dtype=np.float32))
