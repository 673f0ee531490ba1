"""The control plane and the canary controller, driven by a manual clock."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

from feedrank.core.clock import ManualClock
from feedrank.deploy.aggregates import AggregateBook
from feedrank.deploy.analysis import (
    AnalysisConfig,
    ArmTotals,
    CanaryAnalysis,
    ServiceLevels,
    VerdictKind,
)
from feedrank.deploy.auto_rollout import AUTO_ROLLOUT
from feedrank.deploy.control import CANARY_CONTROLLER, ControlConfig, DeployControl
from feedrank.deploy.controller import RolloutController
from feedrank.deploy.counterfactual import CounterfactualGate, GateResult
from feedrank.deploy.errors import ModelVersionNotFound, RolloutPreconditionFailed
from feedrank.deploy.state import Phase
from feedrank.deploy.store import StateFile
from feedrank.registry import LocalModelRegistry
from feedrank.v1 import events_pb2
from tests.support.deploy import WINDOW_MS, publish_versions, window_aggregate

START_MS = 1_764_000_000_000
GOOD = (0.05, 0.002, 0.0006, 0.003)
BAD = (0.05, 0.006, 0.002, 0.003)
PAUSE_MS = 10 * 60 * 1000


class RefuseGate:
    def check(self, stable_version: str, candidate_version: str) -> GateResult:
        return GateResult(False, "off-policy value 0.05 vs 0.10")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START_MS)


@pytest.fixture
def registry(tmp_path: Path, clock: ManualClock) -> LocalModelRegistry:
    return LocalModelRegistry(tmp_path / "registry", clock=clock)


def make_control(
    tmp_path: Path,
    registry: LocalModelRegistry,
    clock: ManualClock,
    config: ControlConfig | None = None,
    gate: CounterfactualGate | None = None,
) -> DeployControl:
    return DeployControl(
        registry,
        StateFile(tmp_path / "rollout.json"),
        clock,
        config or ControlConfig(default_steps=(0.05, 0.5, 1.0), salt="s"),
        gate=gate,
    )


class Simulation:
    def __init__(
        self, control: DeployControl, clock: ManualClock, slo: ServiceLevels | None = None
    ) -> None:
        self.control, self.clock = control, clock
        self.book = AggregateBook()
        self.rng = np.random.default_rng(5)

        class FixedSlo:
            def canary_levels(self) -> ServiceLevels | None:
                return slo

        self.controller = RolloutController(
            control,
            self.book,
            CanaryAnalysis(AnalysisConfig(min_impressions=20_000)),
            clock,
            step_pause_ms=PAUSE_MS,
            slo=FixedSlo(),
        )

    def run(self, canary_rates: tuple[float, float, float, float], windows: int) -> None:
        """Feed 5-minute windows at 100k impressions each, split by the live weight."""
        for _ in range(windows):
            rollout = self.control.rollout()
            if not rollout.active:
                return
            start = self.clock.now_ms()
            self.clock.advance(WINDOW_MS)
            canary = int(100_000 * rollout.canary_weight)
            for version, arm, impressions, rates in (
                (rollout.canary_version, "canary", canary, canary_rates),
                (rollout.stable_version, "stable", 100_000 - canary, GOOD),
            ):
                self.book.add(
                    window_aggregate(
                        self.rng,
                        version=version,
                        arm=arm,
                        window_start_ms=start,
                        impressions=impressions,
                        rates=rates,
                    )
                )
            self.controller.tick()


def test_a_healthy_canary_walks_every_step_and_is_promoted(
    tmp_path: Path, registry: LocalModelRegistry, clock: ManualClock
) -> None:
    stable, candidate = publish_versions(registry, 2)
    control = make_control(tmp_path, registry, clock)
    control.start(stable, actor="alice")
    control.start(candidate, actor="alice")
    simulation = Simulation(control, clock)
    weights = []
    for _ in range(40):
        simulation.run(GOOD, 1)
        weights.append(control.rollout().canary_weight)
    rollout = control.rollout()
    assert rollout.phase is Phase.PROMOTED, rollout.message
    assert rollout.stable_version == candidate
    assert {0.5, 1.0} <= set(weights)
    assert REGISTRY.get_sample_value("feedrank_deploy_canary_weight") == 0.0
    # The audit trail: who made each state, kept across a restart.
    actors = [entry.actor for entry in make_control(tmp_path, registry, clock).history()]
    assert actors[:2] == ["alice", "alice"]
    assert set(actors[2:]) == {CANARY_CONTROLLER}


def test_a_canary_raising_reports_is_rolled_back(
    tmp_path: Path, registry: LocalModelRegistry, clock: ManualClock
) -> None:
    stable, candidate = publish_versions(registry, 2)
    control = make_control(tmp_path, registry, clock)
    control.start(stable)
    control.start(candidate)
    Simulation(control, clock).run(BAD, 40)
    rollout = control.rollout()
    assert rollout.phase is Phase.ROLLED_BACK, rollout.message
    assert rollout.stable_version == stable
    assert rollout.canary_weight == 0.0
    assert "reports" in rollout.message
    assert "significantly higher" in rollout.message


def test_an_slo_breach_rolls_back(
    tmp_path: Path, registry: LocalModelRegistry, clock: ManualClock
) -> None:
    stable, candidate = publish_versions(registry, 2)
    control = make_control(tmp_path, registry, clock)
    control.start(stable)
    control.start(candidate)
    slow = ServiceLevels(requests=500, errors=0, latency_p99_s=2.0)
    simulation = Simulation(control, clock, slo=slow)
    simulation.run(GOOD, 1)
    assert control.rollout().phase is Phase.ROLLED_BACK
    assert "p99 latency" in control.rollout().message


def test_the_controller_never_overrides_a_person(
    tmp_path: Path, registry: LocalModelRegistry, clock: ManualClock
) -> None:
    stable, candidate = publish_versions(registry, 2)
    control = make_control(tmp_path, registry, clock)
    control.start(stable)
    seen = control.start(candidate)
    control.abort("by hand")
    assert control.advance(seen, "healthy") is None
    assert control.rollout().phase is Phase.ABORTED


def test_paused_rollouts_hold_their_step(
    tmp_path: Path, registry: LocalModelRegistry, clock: ManualClock
) -> None:
    stable, candidate = publish_versions(registry, 2)
    control = make_control(tmp_path, registry, clock)
    control.start(stable)
    control.start(candidate)
    control.pause()
    simulation = Simulation(control, clock)
    simulation.run(GOOD, 10)
    assert control.rollout().canary_weight == 0.05
    verdict = simulation.controller.tick()
    assert verdict is not None
    assert verdict.kind is not VerdictKind.ROLLBACK


def test_the_gate_refuses_before_any_traffic(
    tmp_path: Path, registry: LocalModelRegistry, clock: ManualClock
) -> None:
    stable, candidate = publish_versions(registry, 2)
    config = ControlConfig(default_steps=(0.5, 1.0), salt="s")
    control = make_control(tmp_path, registry, clock, config, RefuseGate())
    control.start(stable)
    rollout = control.start(candidate)
    assert (rollout.phase, rollout.canary_weight) == (Phase.ABORTED, 0.0)
    assert "refused before its first step" in rollout.message
    assert "counterfactual gate" in control.last_analysis


class BetterGate:
    def check(self, stable_version: str, candidate_version: str) -> GateResult:
        return GateResult(True, "significantly better: +0.02 [+0.01, +0.03]", better=True)


@pytest.mark.parametrize("confident_first_step", [0.0, 0.25])
def test_a_confidently_better_candidate_may_start_at_a_larger_step(
    tmp_path: Path, registry: LocalModelRegistry, clock: ManualClock, confident_first_step: float
) -> None:
    stable, candidate = publish_versions(registry, 2)
    config = ControlConfig(
        default_steps=(0.01, 0.05, 0.25, 0.5, 1.0),
        salt="s",
        confident_first_step=confident_first_step,
    )
    control = make_control(tmp_path, registry, clock, config, BetterGate())
    control.start(stable)
    rollout = control.start(candidate, actor="alice")
    if confident_first_step == 0.0:  # off by default: the anchors hold
        assert (rollout.canary_weight, rollout.steps) == (0.01, (0.01, 0.05, 0.25, 0.5, 1.0))
        return
    assert (rollout.canary_weight, rollout.steps) == (0.25, (0.25, 0.5, 1.0))
    assert "first step 25% instead of 1%" in rollout.message
    assert "significantly better" in rollout.message
    latest = control.history()[-1]
    assert (latest.actor, latest.message) == ("alice", rollout.message)


def test_unknown_or_corrupt_versions_are_refused(
    tmp_path: Path, registry: LocalModelRegistry, clock: ManualClock
) -> None:
    (stable,) = publish_versions(registry, 1)
    control = make_control(tmp_path, registry, clock)
    with pytest.raises(ModelVersionNotFound, match="v0042"):
        control.start("v0042")
    weights = registry.root / "versions" / stable / "weights.bin"
    weights.chmod(0o644)
    weights.write_bytes(b"tampered")
    with pytest.raises(RolloutPreconditionFailed, match="cannot serve"):
        control.start(stable)


def test_control_reloads_what_it_saved(
    tmp_path: Path, registry: LocalModelRegistry, clock: ManualClock
) -> None:
    stable, candidate = publish_versions(registry, 2)
    control = make_control(tmp_path, registry, clock)
    control.start(stable)
    control.start(candidate)
    control.promote(full=False)
    again = make_control(tmp_path, registry, clock)
    assert again.rollout() == control.rollout()
    assert again.history() == control.history()


def test_auto_rollout_starts_each_new_version_once(
    tmp_path: Path, registry: LocalModelRegistry, clock: ManualClock
) -> None:
    (stable,) = publish_versions(registry, 1)
    control = make_control(tmp_path, registry, clock)
    control.start(stable)
    simulation = Simulation(control, clock)
    simulation.controller.auto_rollout = True

    assert simulation.controller.tick() is None  # nothing newer than stable
    assert not control.rollout().active

    candidate = publish_versions(registry, 1)[0]
    simulation.controller.tick()
    rollout = control.rollout()
    assert rollout.active
    assert rollout.actor == AUTO_ROLLOUT
    assert (rollout.stable_version, rollout.canary_version) == (stable, candidate)

    simulation.run(BAD, 40)  # rolled back: the same version is never tried again
    assert control.rollout().phase is Phase.ROLLED_BACK
    simulation.controller.tick()
    assert not control.rollout().active


def test_retention_deletes_old_versions_but_never_one_a_rollout_needs(
    tmp_path: Path, registry: LocalModelRegistry, clock: ManualClock
) -> None:
    first, second, canary, *_ = publish_versions(registry, 6)
    control = make_control(tmp_path, registry, clock)
    control.start(first)  # stable: the oldest version
    control.start(canary)
    simulation = Simulation(control, clock)
    controller = simulation.controller
    assert controller.prune() == []  # no retention configured

    controller.keep_versions = 3
    assert controller.prune() == [second]
    kept = [manifest.version for manifest in registry.versions()]
    assert kept == [first, canary, "v0004", "v0005", "v0006"]
    simulation.run(GOOD, 40)  # promoted: the old stable is what undo restores
    assert control.rollout().previous_stable == first
    assert controller.prune() == []
    control.undo()
    assert control.rollout().stable_version == first


def lagged_rollout(
    tmp_path: Path, registry: LocalModelRegistry, clock: ManualClock, *, settle_ms: int
) -> Phase:
    """Equal true rates, but each window's engagements come from the previous window's
    impressions (engagements follow impressions): what the controller concludes."""
    stable, candidate = publish_versions(registry, 2)
    control = make_control(tmp_path, registry, clock)
    control.start(stable)
    control.start(candidate)
    book = AggregateBook()
    controller = RolloutController(
        control,
        book,
        CanaryAnalysis(AnalysisConfig(min_impressions=20_000)),
        clock,
        step_pause_ms=PAUSE_MS,
        settle_ms=settle_ms,
    )
    previous = {"canary": 0, "stable": 100_000}
    for _ in range(80):
        rollout = control.rollout()
        if not rollout.active:
            break
        start = clock.now_ms()
        clock.advance(WINDOW_MS)
        canary = int(100_000 * rollout.canary_weight)
        for version, arm, impressions in (
            (rollout.canary_version, "canary", canary),
            (rollout.stable_version, "stable", 100_000 - canary),
        ):
            engagements = round(0.05 * previous[arm])  # last window's impressions
            book.add(
                events_pb2.EngagementAggregate(
                    window_start_ms=start,
                    window_end_ms=start + WINDOW_MS,
                    model_version=version,
                    arm=arm,
                    impressions=impressions,
                    engagements=engagements,
                    prompt_engagements=engagements,  # one window late: within the horizon
                )
            )
            previous[arm] = impressions
        controller.tick()
    return control.rollout().phase


def test_a_settled_split_keeps_lagging_engagements_from_failing_a_healthy_canary(
    tmp_path: Path, clock: ManualClock
) -> None:
    unsettled = lagged_rollout(
        tmp_path / "a", LocalModelRegistry(tmp_path / "a" / "r", clock=clock), clock, settle_ms=0
    )
    assert unsettled is Phase.ROLLED_BACK  # the canary's new impressions had no engagements yet
    settled = lagged_rollout(
        tmp_path / "b",
        LocalModelRegistry(tmp_path / "b" / "r", clock=clock),
        clock,
        settle_ms=2 * WINDOW_MS,
    )
    assert settled is Phase.PROMOTED


def test_the_book_totals_only_the_prompt_rewards_of_a_version() -> None:
    book = AggregateBook()
    for start, arm in ((0, "stable"), (WINDOW_MS, "stable"), (WINDOW_MS, "canary")):
        book.add(
            events_pb2.EngagementAggregate(
                window_start_ms=start,
                window_end_ms=start + WINDOW_MS,
                model_version="v1",
                arm=arm,
                impressions=1_000,
                engagements=90,  # late ones from an older split included
                reports=9,
                prompt_engagements=50,
                prompt_reports=2,
                prompt_blocks=1,
                prompt_hides=3,
            )
        )
    totals = book.totals("v1", since_ms=WINDOW_MS)
    assert (totals.impressions, totals.prompt_engagements, totals.prompt_reports) == (
        2_000,
        100,
        4,
    )
    assert (totals.prompt_blocks, totals.prompt_hides) == (2, 6)
    assert not hasattr(totals, "engagements")  # flows never reach the analysis


def test_retention_never_deletes_the_holdout_version(
    tmp_path: Path, registry: LocalModelRegistry, clock: ManualClock
) -> None:
    first, second, third, *_ = publish_versions(registry, 6)
    control = make_control(tmp_path, registry, clock)
    control.start(first)  # the first stable version: the holdout's for good
    for version in (second, third):
        control.start(version)
        control.promote(full=True)
    rollout = control.rollout()
    assert (rollout.stable_version, rollout.previous_stable) == (third, second)
    controller = Simulation(control, clock).controller
    controller.keep_versions = 3
    assert controller.prune() == []  # v0001 is the holdout's; v0002 undo's; v0003 stable
    assert first in [manifest.version for manifest in registry.versions()]


def test_the_pre_period_ends_where_the_rollout_began_in_event_time(
    tmp_path: Path, registry: LocalModelRegistry, clock: ManualClock
) -> None:
    stable, candidate = publish_versions(registry, 2)
    control = make_control(tmp_path, registry, clock)
    control.start(stable)
    book = AggregateBook()
    book.add(  # the latest window before the rollout: it ends at START_MS
        window_aggregate(
            np.random.default_rng(0),
            version=stable,
            arm="stable",
            window_start_ms=START_MS - WINDOW_MS,
            impressions=1_000,
            rates=GOOD,
        )
    )
    asked: list[tuple[float, int]] = []

    class RecordingPrePeriod:
        def before(
            self, rollout: object, canary_weight: float, until_ms: int
        ) -> tuple[ArmTotals, ArmTotals] | None:
            asked.append((canary_weight, until_ms))
            return None

    controller = RolloutController(
        control,
        book,
        CanaryAnalysis(AnalysisConfig(min_impressions=20_000)),
        clock,
        step_pause_ms=PAUSE_MS,
        pre_period=RecordingPrePeriod(),
    )
    control.start(candidate)
    controller.tick()
    clock.advance(WINDOW_MS)
    controller.tick()
    assert asked == [(0.05, START_MS), (0.05, START_MS)]  # the latest window's end
