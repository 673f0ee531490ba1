"""The plan follower: applies plans, refuses bad versions, and never stops serving."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from feedrank.explore.model_slots import ModelSlots, ServingSet
from feedrank.explore.plan_follower import FollowerTiming, PlanFollower
from feedrank.explore.plan_sources import FilePlanSource
from feedrank.explore.serving_plan import ArmPlan, PlanError, ServingPlan
from feedrank.registry import LocalModelRegistry
from feedrank.registry.bundle import RANKER_FILE
from tests.support.model_versions import publish, small_bundle, writable
from tests.unit.explore.conftest import SwapWorld


def write_plan(path: Path, *arms: tuple[str, str, float], salt: str = "s") -> None:
    plan = ServingPlan(tuple(ArmPlan(*arm) for arm in arms), salt)
    staging = path.with_suffix(".tmp")
    staging.write_text(plan.to_json())
    staging.replace(path)


@pytest.fixture
def versions(swap_world: SwapWorld, registry: LocalModelRegistry) -> list[str]:
    return [publish(registry, small_bundle(swap_world.posts, seed)) for seed in (1, 2)]


def follower(
    swap_world: SwapWorld, registry: LocalModelRegistry, plan_file: Path
) -> tuple[PlanFollower, ModelSlots]:
    slots = ModelSlots()
    loader = swap_world.loader(registry)
    return PlanFollower(
        slots, FilePlanSource(plan_file), loader, FollowerTiming(0.05, free_timeout_s=0.05)
    ), slots


def test_plans_are_applied_and_reweighting_loads_nothing(
    swap_world: SwapWorld, registry: LocalModelRegistry, versions: list[str], tmp_path: Path
) -> None:
    plan_file = tmp_path / "plan.json"
    follow, slots = follower(swap_world, registry, plan_file)
    assert follow.sync_once() == "plan_error"  # no plan yet: nothing served, nothing broken
    assert slots.current() is None

    write_plan(plan_file, ("stable", versions[0], 1.0))
    assert follow.sync_once() == "swapped"
    assert follow.sync_once() == "unchanged"
    stable = slots.current()
    assert stable is not None
    assert stable.versions == {"stable": versions[0]}

    write_plan(plan_file, ("stable", versions[0], 0.9), ("canary", versions[1], 0.1))
    assert follow.sync_once() == "swapped"
    both = slots.current()
    assert both is not None
    assert both.models["stable"] is stable.models["stable"]

    write_plan(plan_file, ("stable", versions[0], 0.5), ("canary", versions[1], 0.5), salt="t")
    assert follow.sync_once() == "reweighted"
    reweighted = slots.current()
    assert reweighted is not None
    assert reweighted.splitter.shares["canary"] == 0.5
    assert reweighted.models["canary"] is both.models["canary"]


def test_a_corrupt_version_is_refused_and_the_current_set_keeps_serving(
    swap_world: SwapWorld, registry: LocalModelRegistry, versions: list[str], tmp_path: Path
) -> None:
    plan_file = tmp_path / "plan.json"
    follow, slots = follower(swap_world, registry, plan_file)
    write_plan(plan_file, ("stable", versions[0], 1.0))
    follow.sync_once()
    serving = slots.current()
    target = writable(registry.open_verified(versions[1]) / RANKER_FILE)
    target.write_bytes(target.read_bytes()[:-8])

    write_plan(plan_file, ("stable", versions[0], 0.9), ("canary", versions[1], 0.1))
    assert follow.sync_once() == "refused"
    assert slots.current() is serving
    assert "fails its checksum" in follow.status.refused[versions[1]]
    assert follow.sync_once() == "unchanged"  # not retried until the plan changes

    write_plan(plan_file, ("stable", versions[0], 1.0), salt="other")
    assert follow.sync_once() == "reweighted"


def test_an_unreadable_plan_keeps_serving(
    swap_world: SwapWorld, registry: LocalModelRegistry, versions: list[str], tmp_path: Path
) -> None:
    plan_file = tmp_path / "plan.json"
    follow, slots = follower(swap_world, registry, plan_file)
    write_plan(plan_file, ("stable", versions[0], 1.0))
    follow.sync_once()
    serving = slots.current()
    plan_file.write_text('{"arms": [{"arm": "stable", "version": "v0002"}]}')  # wrong field
    assert follow.sync_once() == "plan_error"
    assert "version" in follow.status.last_error
    assert slots.current() is serving


def test_the_background_thread_follows_the_plan(
    swap_world: SwapWorld, registry: LocalModelRegistry, versions: list[str], tmp_path: Path
) -> None:
    plan_file = tmp_path / "plan.json"
    follow, slots = follower(swap_world, registry, plan_file)
    slots.swap(ServingSet.single(swap_world.loader(registry).load(versions[0])))
    write_plan(plan_file, ("stable", versions[1], 1.0))
    follow.start()
    try:
        for _ in range(600):
            current = slots.current()
            if current is not None and current.versions == {"stable": versions[1]}:
                break
            time.sleep(0.05)
        assert slots.current().versions == {"stable": versions[1]}  # type: ignore[union-attr]
    finally:
        follow.stop()


def test_plan_json_round_trips_and_rejects_what_breaks_the_contract() -> None:
    plan = ServingPlan((ArmPlan("stable", "v0001", 0.95), ArmPlan("canary", "v0002", 0.05)), "x")
    assert ServingPlan.from_json(plan.to_json()) == plan
    assert ServingPlan.from_json('{"arms": []}') == ServingPlan(())
    for text, problem in [
        ('{"arms": [{"arm": "a", "model_version": "v1", "weight": 1}], "extra": 1}', "extra"),
        ('{"arms": [{"arm": "a", "model_version": "v1", "weight": -1}]}', "weight"),
        ('{"arms": [{"arm": "a", "model_version": "", "weight": 1}]}', "model_version"),
        (
            '{"arms": [{"arm": "a", "model_version": "v1", "weight": 1},'
            ' {"arm": "a", "model_version": "v2", "weight": 1}]}',
            "distinct",
        ),
        ('{"arms": [{"arm": "a", "model_version": "v1", "weight": 0}]}', "positive"),
        ("[1, 2]", "ServingPlan"),
    ]:
        with pytest.raises(PlanError, match=problem):
            ServingPlan.from_json(text)
