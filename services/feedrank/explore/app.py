"""Assemble the explore service from settings: catalogue, feature store, model, workers.

The catalogue comes from the entity topics (``catalogue_source.replay_catalogue``, what
``feedrank serve`` does) or, in tests and benchmarks, from any :class:`CatalogueState`
built in process. With feed positions, every worker tails the topics from where the
parent's replay stopped and indexes new posts as they arrive (``catalogue_source``).

With a serving plan configured (``explore.deploy_address`` or ``explore.plan_file``),
every worker also runs a :class:`PlanFollower` that loads the plan's registry versions
and switches them in (see ``plan_follower``); without one it serves the initial model,
the cold-start policy (``cold_start``). Versions are opened from the registry directory
or fetched from the deploy service, per ``explore.model_source`` (``model_sources``).
With ``explore.feature_updates`` (the default) every worker also keeps its feature
store fresh from the rewards and decisions topics (see ``feature_updates``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from feedrank.catalogue import CatalogueState
from feedrank.core.clock import Clock
from feedrank.core.exploration import policy_from_name
from feedrank.core.settings import Settings
from feedrank.core.time_units import DAY_MS
from feedrank.explore.catalogue_source import CatalogueTail, Positions
from feedrank.explore.cold_start import catalogue_creation_times
from feedrank.explore.deadline import Deadline
from feedrank.explore.decision_log import DecisionLogConfig, DecisionLogger
from feedrank.explore.errors import ModelRefused
from feedrank.explore.feature_updates import (
    FeatureUpdater,
    KafkaSourceConfig,
    kafka_feature_updater,
)
from feedrank.explore.model_loader import ModelLoader, check_user_ids
from feedrank.explore.model_slots import ModelSlots
from feedrank.explore.model_sources import parent_versions, prefetch, worker_versions
from feedrank.explore.plan_follower import FollowerTiming, PlanFollower
from feedrank.explore.plan_sources import plan_source
from feedrank.explore.queries import RankQuery, RankResult
from feedrank.explore.service import ExploreService
from feedrank.explore.serving_model import ServingModel, initial_serving_model
from feedrank.explore.serving_plan import ServingPlan
from feedrank.explore.workers import BackendFactory, WorkerBackend
from feedrank.features.store import InMemoryFeatureStore
from feedrank.registry import RegistryError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServingState:
    """Read-only state built once in the parent and shared by forked workers."""

    catalogue: CatalogueState
    store: InMemoryFeatureStore
    model: ServingModel  # the initial model, served until a plan names registry versions
    positions: Positions | None = None  # where workers tail the catalogue topics; None: no tail


def build_serving_state(
    settings: Settings,
    clock: Clock,
    catalogue: CatalogueState,
    *,
    positions: Positions | None = None,
    show_progress: bool,
    initial_version: str | None = None,
) -> ServingState:
    """The feature store over ``catalogue`` and the initial model over its live posts:
    registry version ``initial_version`` when given and it loads (the plan's main arm,
    so the workers share it and their first plan sync has nothing to load), else the
    cold-start policy (``cold_start``)."""
    store = InMemoryFeatureStore(catalogue)
    if initial_version is not None:
        loaded = _load_version(settings, clock, catalogue, store, initial_version)
        if loaded is not None:
            return ServingState(catalogue, store, loaded, positions)
    rows = catalogue.live_rows()
    posts = store.post_features(rows, clock.now_ms())
    created_ms = np.asarray(catalogue.post_column("created_ms")[rows], dtype=np.int64)
    model = initial_serving_model(
        posts,
        created_ms,
        settings=settings.explore,
        creation_times=catalogue_creation_times(catalogue),
        show_progress=show_progress,
    )
    return ServingState(catalogue, store, model, positions)


def _load_version(
    settings: Settings,
    clock: Clock,
    catalogue: CatalogueState,
    store: InMemoryFeatureStore,
    version: str,
) -> ServingModel | None:
    explore = settings.explore
    loader = ModelLoader(
        parent_versions(settings),
        store,
        catalogue,
        check_user_ids=check_user_ids(catalogue, explore.check_users),
        settings=explore,
        clock=clock,
    )
    try:
        prefetch(settings, version)
        return loader.load(version)
    except RegistryError as error:
        log.warning(
            "the plan's %s is unavailable (%s): starting on the cold-start policy", version, error
        )
    except ModelRefused as refused:
        log.warning(
            "the plan's %s is refused (%s): starting on the cold-start policy", version, refused
        )
    except Exception:  # whatever a load raises, the service still starts
        log.exception("loading the plan's %s failed: starting on the cold-start policy", version)
    return None


def main_arm_version(plan: ServingPlan | None) -> str | None:
    """The version of the plan's arm with the most traffic; None without a plan."""
    if plan is None or not plan.arms:
        return None
    return max(plan.arms, key=lambda arm: arm.weight).model_version


def explore_service(
    settings: Settings, clock: Clock, state: ServingState, *, log_decisions: bool = True
) -> ExploreService:
    """An ExploreService serving ``state.model``, logging to Kafka unless told not to."""
    decision_log = (
        DecisionLogger(
            DecisionLogConfig(
                bootstrap=settings.kafka.access,
                topic=settings.topics.decisions,
                max_queued_decisions=settings.explore.log_queue_limit,
                linger_ms=settings.explore.log_linger_ms,
                delivery=settings.explore.decision_delivery,
                ack_timeout_ms=settings.explore.decision_ack_timeout_ms,
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


def plan_follower(
    settings: Settings, clock: Clock, state: ServingState, slots: ModelSlots
) -> PlanFollower | None:
    """A follower of the configured serving plan into ``slots``; None without a plan."""
    explore = settings.explore
    source = plan_source(explore, settings.tls)
    if source is None:
        return None
    loader = ModelLoader(
        worker_versions(settings),
        state.store,
        state.catalogue,
        check_user_ids=check_user_ids(state.catalogue, explore.check_users),
        settings=explore,
        clock=clock,
    )
    timing = FollowerTiming(
        interval_s=explore.plan_poll_interval_s,
        refused_retry_s=explore.refused_retry_s,
        nice=explore.loader_nice,
    )
    return PlanFollower(slots, source, loader, timing)


def feature_updater(settings: Settings, clock: Clock, state: ServingState) -> FeatureUpdater | None:
    """An updater of ``state.store`` from the event topics (not started); None when
    ``explore.feature_updates`` is off."""
    explore = settings.explore
    if not explore.feature_updates:
        return None
    config = KafkaSourceConfig(
        bootstrap=settings.kafka.access,
        rewards_topic=settings.topics.rewards,
        decisions_topic=settings.topics.decisions,
        replay_ms=int(explore.feature_replay_days * DAY_MS),
    )
    return kafka_feature_updater(state.store, config, clock)


@dataclass
class BackgroundBackend:
    """A worker backend with what runs beside it: the catalogue tail, the feature updater
    and the plan follower (each optional), stopped in that order before the backend closes."""

    backend: WorkerBackend
    tail: CatalogueTail | None = None
    updater: FeatureUpdater | None = None
    follower: PlanFollower | None = None

    def rank(self, query: RankQuery, deadline: Deadline) -> RankResult:
        return self.backend.rank(query, deadline)

    def arm_of(self, user_id: str) -> str:
        return self.backend.arm_of(user_id)

    def is_ready(self) -> bool:
        return self.backend.is_ready()

    def close(self) -> None:
        self._stop_tasks()
        self.backend.close()

    def _stop_tasks(self) -> None:
        if self.tail is not None:
            self.tail.stop()
        if self.updater is not None:
            self.updater.stop()
        if self.follower is not None:
            self.follower.stop()


def worker_backend(
    settings: Settings, clock: Clock, state: ServingState, service: ExploreService
) -> BackgroundBackend:
    """``service`` with what the settings run beside it: the catalogue tail (with feed
    positions) and the feature updater (started first: they reach Kafka from their own
    threads), and the plan follower, which applies the plan once before this returns, so
    no request sees the initial model when a plan names versions."""
    running = BackgroundBackend(service)
    try:
        if state.positions is not None:
            running.tail = CatalogueTail(
                settings,
                clock,
                state.catalogue,
                state.store,
                service.slots,
                positions=state.positions,
            )
            running.tail.start()
        running.updater = feature_updater(settings, clock, state)
        if running.updater is not None:
            running.updater.start()
        follower = plan_follower(settings, clock, state, service.slots)
        if follower is not None:
            follower.sync_once()
            follower.start()
            running.follower = follower
    except Exception:  # the worker fails to start: stop what already runs
        running._stop_tasks()
        raise
    return running


def worker_backend_factory(
    settings: Settings, clock: Clock, state: ServingState, *, log_decisions: bool = True
) -> BackendFactory:
    """What each forked worker runs: one torch thread, its own Kafka producer, the
    feature updater unless turned off and the plan follower when a plan is configured."""

    def make_backend() -> WorkerBackend:
        use_one_core()
        service = explore_service(settings, clock, state, log_decisions=log_decisions)
        return worker_backend(settings, clock, state, service)

    return make_backend


def use_one_core() -> None:
    """One thread for torch and one for BLAS in this process: a worker is one core.

    numpy's OpenBLAS otherwise starts a thread per core for every matrix product (the
    two-tower similarity of 1,000 candidates) and its threads busy-wait between calls.
    With several workers and the gRPC handler threads on the same cores that spinning
    took 18 ms of CPU per Rank call against 4.3 ms of work: 108 Rank/s on two cores
    instead of 380 (100k posts, ``benchmarks/rank_load.py``).
    """
    torch.set_num_threads(1)
    threadpool_limits(limits=1, user_api="blas")
