"""Small models and simulated example batches for the learner tests (seeded, fast)."""

from __future__ import annotations

import functools

import numpy as np

from feedrank.learners.examples import ExampleBatch, batch_from_examples
from feedrank.models.ranker import RankerConfig
from feedrank.models.two_tower import TwoTowerConfig
from feedrank.simulate.history import ExampleSimulator, SimulationConfig
from feedrank.simulate.world import World, WorldConfig, generate_world
from feedrank.v1 import events_pb2


def small_two_tower(seed: int = 0) -> TwoTowerConfig:
    return TwoTowerConfig(
        embedding_dim=8,
        topic_dims=4,
        user_id_buckets=256,
        post_id_buckets=512,
        id_embedding_dim=4,
        category_embedding_dim=4,
        hidden_sizes=(16,),
        seed=seed,
    )


def small_ranker(seed: int = 0) -> RankerConfig:
    return RankerConfig(
        tower_dim=8,
        user_id_buckets=256,
        post_id_buckets=512,
        id_embedding_dim=4,
        category_embedding_dim=4,
        hidden_sizes=(16, 8),
        seed=seed,
    )


@functools.lru_cache(maxsize=1)
def tiny_world() -> World:
    return generate_world(WorldConfig(num_users=60, num_creators=20, num_posts=400, seed=3))


@functools.lru_cache(maxsize=4)
def simulated_examples(count: int, seed: int = 0) -> tuple[events_pb2.LabelledExample, ...]:
    simulator = ExampleSimulator(tiny_world(), SimulationConfig(pool_size=40, seed=seed))
    return tuple(simulator.examples(count))


def simulated_batches(count: int = 3, size: int = 200) -> list[ExampleBatch]:
    """``count`` batches of ``size`` examples, each with positives and negatives."""
    examples = simulated_examples(count * size)
    topics = np.asarray(tiny_world().posts.topics)
    batches = [
        batch_from_examples(examples[start : start + size], topics=topics)
        for start in range(0, count * size, size)
    ]
    for batch in batches:  # make every batch usable by every learner
        labels = batch.labels
        labels[: max(4, len(labels) // 10)] = 1.0
    return batches
