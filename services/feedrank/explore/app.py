"""Assemble the explore service from settings: world, feature store, model, workers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from feedrank.core.clock import Clock
from feedrank.core.features.store import InMemoryFeatureStore
from feedrank.core.settings import Settings
from feedrank.core.world import World, WorldConfig, generate_world
from feedrank.explore.decision_log import DecisionLogConfig, DecisionLogger
from feedrank.explore.exploration import policy_from_name
from feedrank.explore.service import ExploreService
from feedrank.explore.serving_model import ServingModel, initial_serving_model
from feedrank.explore.workers import BackendFactory


@dataclass(frozen=True)
class ServingState:
    """Read-only state built once in the parent and shared by forked workers."""

    world: World
    store: InMemoryFeatureStore
    model: ServingModel


def build_serving_state(settings: Settings, clock: Clock, *, show_progress: bool) -> ServingState:
    """The simulated world as of now, its feature store and the initial model."""
    world = generate_world(
        WorldConfig(
            num_users=settings.world.num_users,
            num_creators=settings.world.num_creators,
            num_posts=settings.world.num_posts,
            seed=settings.world.seed,
            start_ms=settings.world.start_or(clock.now_ms()),
        )
    )
    store = InMemoryFeatureStore.from_world(world)
    posts = store.post_features(np.arange(world.num_posts, dtype=np.int64), clock.now_ms())
    model = initial_serving_model(
        posts,
        np.asarray(world.posts.created_ms, dtype=np.int64),
        seed=settings.world.seed,
        show_progress=show_progress,
    )
    return ServingState(world, store, model)


def explore_service(
    settings: Settings, clock: Clock, state: ServingState, *, log_decisions: bool = True
) -> ExploreService:
    """An ExploreService serving ``state.model``, logging to Kafka unless told not to."""
    decision_log = (
        DecisionLogger(
            DecisionLogConfig(
                bootstrap=settings.kafka.bootstrap,
                topic=settings.topics.decisions,
                max_queued_decisions=settings.explore.log_queue_limit,
            )
        )
        if log_decisions
        else None
    )
    explore = settings.explore
    service = ExploreService(
        store=state.store,
        settings=explore,
        policy=policy_from_name(
            explore.exploration, epsilon=explore.epsilon, temperature=explore.temperature
        ),
        clock=clock,
        decision_log=decision_log,
    )
    service.load(state.model)
    return service


def worker_backend_factory(
    settings: Settings, clock: Clock, state: ServingState, *, log_decisions: bool = True
) -> BackendFactory:
    """What each forked worker runs: one torch thread, its own Kafka producer."""

    def make_backend() -> ExploreService:
        torch.set_num_threads(1)
        return explore_service(settings, clock, state, log_decisions=log_decisions)

    return make_backend
