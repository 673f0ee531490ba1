"""Before the workers fork, serve loads the plan's main version instead of building the
cold-start model, and starts on the cold-start policy when that version is refused."""

from __future__ import annotations

from pathlib import Path

from feedrank.core.settings import load_settings
from feedrank.explore.app import build_serving_state, main_arm_version
from feedrank.explore.plan_sources import first_plan
from feedrank.explore.serving_plan import ArmPlan, ServingPlan
from feedrank.registry import LocalModelRegistry
from feedrank.registry.bundle import TWO_TOWER_FILE
from tests.support.model_versions import publish, small_bundle, writable
from tests.unit.explore.conftest import SwapWorld


def test_the_plans_main_arm_is_loaded_before_the_fork(
    swap_world: SwapWorld, registry: LocalModelRegistry, tmp_path: Path
) -> None:
    version = publish(registry, small_bundle(swap_world.posts, seed=3))
    plan_file = tmp_path / "plan.json"
    plan = ServingPlan((ArmPlan("stable", version, 0.9), ArmPlan("canary", "v9999", 0.1)))
    plan_file.write_text(plan.to_json())
    settings = load_settings(
        paths={"registry_dir": registry.root}, explore={"plan_file": plan_file}
    )
    read = first_plan(settings.explore)
    assert read == plan
    assert main_arm_version(read) == version

    state = build_serving_state(
        settings,
        swap_world.clock,
        swap_world.catalogue,
        show_progress=False,
        initial_version=version,
    )
    assert state.model.version == version
    assert len(state.model.index) == swap_world.world.num_posts


def test_a_refused_version_starts_on_the_cold_start_policy(
    swap_world: SwapWorld, registry: LocalModelRegistry
) -> None:
    version = publish(registry, small_bundle(swap_world.posts, seed=4))
    target = writable(registry.open_verified(version) / TWO_TOWER_FILE)
    target.write_bytes(target.read_bytes()[:-16])  # corrupt after publishing
    settings = load_settings(paths={"registry_dir": registry.root})
    state = build_serving_state(
        settings,
        swap_world.clock,
        swap_world.catalogue,
        show_progress=False,
        initial_version=version,
    )
    assert state.model.version == "v0-init"  # the cold-start policy


def test_without_a_plan_there_is_no_initial_version() -> None:
    assert first_plan(load_settings().explore) is None
    assert main_arm_version(None) is None
