"""Atomic swaps: a request finishes on the versions it started with; old ones are freed."""

from __future__ import annotations

import gc
import threading
import weakref
from typing import cast

import pytest

from feedrank.core.exploration import policy_from_name
from feedrank.core.feature_schema import UserFeatures
from feedrank.core.settings import ExploreSettings
from feedrank.explore.deadline import Deadline
from feedrank.explore.decision_log import DecisionLogger
from feedrank.explore.errors import ModelRefused
from feedrank.explore.model_slots import ModelSlots, ServingSet, free_when_unused
from feedrank.explore.queries import RankQuery, RankResult
from feedrank.explore.service import ExploreService
from feedrank.explore.serving_model import ServingModel, index_catalogue
from feedrank.explore.serving_plan import ArmPlan, ServingPlan
from feedrank.explore.traffic_splitter import TrafficSplitter
from feedrank.features.store import InMemoryFeatureStore
from feedrank.v1 import events_pb2
from tests.support.model_versions import small_bundle
from tests.unit.explore.conftest import SwapWorld


def serving_model(swap_world: SwapWorld, version: str, seed: int) -> ServingModel:
    bundle = small_bundle(swap_world.posts, seed)
    index = index_catalogue(
        bundle.two_tower, swap_world.posts, swap_world.catalogue.post_column("created_ms")
    )
    return ServingModel(version, bundle.two_tower, bundle.ranker, index)


class GatedStore(InMemoryFeatureStore):
    """A feature store that holds one user's request at its first stage until released."""

    def __init__(self, store: InMemoryFeatureStore, gated_user: str) -> None:
        self.__dict__.update(store.__dict__)
        self.gated_user = gated_user
        self.entered = threading.Event()
        self.release = threading.Event()

    def user_features(
        self,
        user_id: str,
        at_ms: int,
        *,
        fallback_language: int | None = None,
        fallback_country: int | None = None,
    ) -> UserFeatures:
        if user_id == self.gated_user:
            self.entered.set()
            assert self.release.wait(30)
        return super().user_features(
            user_id,
            at_ms,
            fallback_language=fallback_language,
            fallback_country=fallback_country,
        )


class RecordingLog:
    def __init__(self) -> None:
        self.decisions: list[events_pb2.Decision] = []

    def log_encoded(self, user_id: str, decision: bytes) -> bool:
        parsed = events_pb2.Decision.FromString(decision)
        assert parsed.user_id == user_id
        self.decisions.append(parsed)
        return True

    def close(self) -> None:
        return None


def service_over(
    swap_world: SwapWorld, store: InMemoryFeatureStore, log: RecordingLog | None = None
) -> ExploreService:
    return ExploreService(
        store=store,
        settings=ExploreSettings(candidates=200),
        policy=policy_from_name("greedy", epsilon=0.0, temperature=1.0),
        clock=swap_world.clock,
        decision_log=cast(DecisionLogger, log),
    )


def query(swap_world: SwapWorld, user_id: str) -> RankQuery:
    return RankQuery(
        user_id=user_id,
        limit=5,
        request_time_ms=swap_world.clock.now_ms(),
        language=None,
        country=None,
        surface="explore",
        numeric_context={},
    )


def rank_in_thread(
    service: ExploreService, swap_world: SwapWorld, user_id: str
) -> tuple[threading.Thread, list[RankResult]]:
    results: list[RankResult] = []
    thread = threading.Thread(
        target=lambda: results.append(
            service.rank(query(swap_world, user_id), Deadline.after(30.0))
        )
    )
    thread.start()
    return thread, results


def test_a_request_in_flight_finishes_on_its_version_and_the_old_one_is_freed(
    swap_world: SwapWorld,
) -> None:
    store = GatedStore(swap_world.store, gated_user="u7")
    service = service_over(swap_world, store)
    service.load(serving_model(swap_world, "v0001", seed=1))
    old = weakref.ref(next(iter(service.slots.current().models.values())))  # type: ignore[union-attr]

    thread, results = rank_in_thread(service, swap_world, "u7")
    assert store.entered.wait(30)  # the request has read the slots and is mid-pipeline
    service.load(serving_model(swap_world, "v0002", seed=2))
    assert service.rank(query(swap_world, "u8"), Deadline.after(30.0)).model_version == "v0002"
    gc.collect()
    assert old() is not None  # still in use by the request in flight
    store.release.set()
    thread.join(30)

    assert [result.model_version for result in results] == ["v0001"]
    del results, thread
    gc.collect()
    assert old() is None  # freed once nothing used it any more


def test_a_plan_routes_users_to_arms_and_logs_arm_and_version(swap_world: SwapWorld) -> None:
    log = RecordingLog()
    service = service_over(swap_world, swap_world.store, log)
    slots = service.slots
    models = {"v0001": serving_model(swap_world, "v0001", 1)}
    models["v0002"] = serving_model(swap_world, "v0002", 2)
    plan = ServingPlan((ArmPlan("stable", "v0001", 0.5), ArmPlan("canary", "v0002", 0.5)), salt="t")
    serving, loaded = slots.build(plan, models.__getitem__)
    slots.swap(serving)
    assert loaded == ["v0001", "v0002"]

    splitter = TrafficSplitter(plan.weights, plan.salt)
    users = [f"u{index}" for index in range(40)]
    results = [service.rank(query(swap_world, user), Deadline.after(30.0)) for user in users]

    assert {result.arm for result in results} == {"stable", "canary"}
    for user, result, decision in zip(users, results, log.decisions, strict=True):
        assert result.arm == decision.arm == splitter.arm_of(user)
        assert result.model_version == decision.model_version == plan.versions[result.arm]


def test_build_reuses_served_versions_and_refusal_leaves_the_current_set(
    swap_world: SwapWorld,
) -> None:
    slots = ModelSlots()
    first = serving_model(swap_world, "v0001", 1)
    slots.swap(ServingSet.single(first))
    loads: list[str] = []

    def load(version: str) -> ServingModel:
        loads.append(version)
        raise ModelRefused(version, "recall", "poor")

    reweighted, loaded = slots.build(
        ServingPlan((ArmPlan("stable", "v0001", 1.0), ArmPlan("canary", "v0001", 0.0))), load
    )
    assert loaded == loads == []
    assert reweighted.models["canary"] is first

    current = slots.current()
    with pytest.raises(ModelRefused):
        slots.build(ServingPlan((ArmPlan("stable", "v0009", 1.0),)), load)
    assert slots.current() is current
    assert loads == ["v0009"]


def test_a_retired_model_is_freed_by_the_follower_not_by_the_last_request(
    swap_world: SwapWorld,
) -> None:
    slots = ModelSlots()
    slots.swap(ServingSet.single(serving_model(swap_world, "v0001", seed=1)))
    freed_in: list[str] = []
    in_flight = slots.current()  # what a request still running holds
    assert in_flight is not None
    weakref.finalize(
        in_flight.models["stable"], lambda: freed_in.append(threading.current_thread().name)
    )

    previous = slots.swap(ServingSet.single(serving_model(swap_world, "v0002", seed=2)))
    assert previous is in_flight
    retiring = [previous]
    del previous
    follower = threading.Thread(
        target=lambda: free_when_unused(retiring, timeout_s=30), name="follower"
    )
    follower.start()
    follower.join(0.2)
    assert follower.is_alive()
    assert freed_in == []
    del in_flight  # the request returns: freeing the model is not its job
    follower.join(30)
    assert freed_in == ["follower"]


def test_a_model_held_elsewhere_does_not_hold_up_the_follower(swap_world: SwapWorld) -> None:
    initial = serving_model(swap_world, "v0-init", seed=1)  # e.g. kept by the app state
    retiring = [ServingSet.single(initial)]
    assert free_when_unused(retiring, timeout_s=1)
    assert retiring == []
