"""The rollout state machine: transitions, refusals and invariants."""

from __future__ import annotations

import math

import pytest

from feedrank.deploy import state
from feedrank.deploy.errors import InvalidRolloutArgument, RolloutPreconditionFailed
from feedrank.deploy.state import InvariantBroken, Phase, Rollout

STEPS = (0.1, 0.5, 1.0)


def stable(version: str = "v0001") -> Rollout:
    return state.start(Rollout(), version, STEPS, now_ms=1)


def progressing() -> Rollout:
    return state.start(stable(), "v0002", STEPS, now_ms=10)


def test_the_first_version_becomes_stable_without_a_canary() -> None:
    rollout = stable()
    assert rollout.phase is Phase.STABLE
    assert rollout.stable_version == "v0001"
    assert rollout.canary_weight == 0.0
    assert state.serving_arms(rollout) == [state.Arm("stable", "v0001", 1.0)]


def test_start_puts_the_canary_at_its_first_step() -> None:
    rollout = progressing()
    assert (rollout.phase, rollout.canary_version, rollout.canary_weight) == (
        Phase.PROGRESSING,
        "v0002",
        0.1,
    )
    assert rollout.started_ms == rollout.step_started_ms == 10
    arms = state.serving_arms(rollout)
    assert [(arm.arm, arm.model_version) for arm in arms] == [
        ("stable", "v0001"),
        ("canary", "v0002"),
    ]
    assert math.isclose(sum(arm.weight for arm in arms), 1.0)


def test_advance_walks_the_steps_then_promotes() -> None:
    rollout = progressing()
    rollout = state.advance(rollout, 20)
    assert (rollout.current_step, rollout.canary_weight, rollout.step_started_ms) == (1, 0.5, 20)
    rollout = state.advance(rollout, 30)
    assert rollout.canary_weight == 1.0
    rollout = state.advance(rollout, 40)
    assert rollout.phase is Phase.PROMOTED
    assert (rollout.stable_version, rollout.canary_version, rollout.previous_stable) == (
        "v0002",
        "",
        "v0001",
    )
    assert state.serving_arms(rollout) == [state.Arm("stable", "v0002", 1.0)]


def test_abort_sends_canary_traffic_to_zero_at_once() -> None:
    rollout = state.abort(state.advance(progressing(), 20), 25, "looks odd")
    assert rollout.phase is Phase.ABORTED
    assert rollout.canary_weight == 0.0
    assert "looks odd" in rollout.message
    assert state.serving_arms(rollout) == [state.Arm("stable", "v0001", 1.0)]


def test_roll_back_is_an_automatic_abort() -> None:
    rollout = state.roll_back(progressing(), 20, "reports up")
    assert rollout.phase is Phase.ROLLED_BACK
    assert rollout.canary_weight == 0.0
    assert state.serving_arms(rollout) == [state.Arm("stable", "v0001", 1.0)]


def test_pause_resume_and_manual_weight() -> None:
    paused = state.pause(progressing(), 20)
    assert paused.phase is Phase.PAUSED
    assert paused.canary_weight == 0.1
    resumed = state.resume(paused, 30)
    assert resumed.phase is Phase.PROGRESSING
    held = state.set_weight(resumed, 0.7, 40)
    assert held.phase is Phase.PAUSED
    assert held.canary_weight == 0.7
    # The next step above a hand-set weight is 1.0, not 0.5.
    assert state.advance(state.resume(held, 50), 60).canary_weight == 1.0


def test_promote_without_full_skips_one_step() -> None:
    rollout = state.promote(progressing(), 20, full=False)
    assert rollout.phase is Phase.PROGRESSING
    assert rollout.canary_weight == 0.5
    assert state.promote(rollout, 30, full=True).phase is Phase.PROMOTED


def test_undo_after_promotion_restores_the_previous_stable() -> None:
    promoted = state.promote(progressing(), 20, full=True)
    undone = state.undo(promoted, 30)
    assert (undone.phase, undone.stable_version, undone.previous_stable) == (
        Phase.STABLE,
        "v0001",
        "v0002",
    )
    assert state.undo(undone, 40).stable_version == "v0002"  # undo of undo


def test_undo_during_a_rollout_drops_the_canary() -> None:
    undone = state.undo(progressing(), 20)
    assert (undone.stable_version, undone.canary_weight, undone.phase) == (
        "v0001",
        0.0,
        Phase.STABLE,
    )


def test_undo_to_a_named_version() -> None:
    assert state.undo(stable(), 5, "v0007").stable_version == "v0007"


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (lambda r: state.pause(r, 2), "no rollout in progress"),
        (lambda r: state.abort(r, 2), "no rollout in progress"),
        (lambda r: state.promote(r, 2, full=True), "no rollout in progress"),
        (lambda r: state.resume(r, 2), "only a paused rollout"),
        (lambda r: state.undo(r, 2), "no previous stable"),
        (lambda r: state.start(r, "v0001", STEPS, 2), "already the stable"),
    ],
)
def test_actions_that_do_not_fit_the_phase_are_refused(action, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RolloutPreconditionFailed, match=message):
        action(stable())


def test_a_second_rollout_waits_for_the_first() -> None:
    with pytest.raises(RolloutPreconditionFailed, match="already progressing"):
        state.start(progressing(), "v0003", STEPS, 20)


@pytest.mark.parametrize(
    "steps",
    [(), (0.5, 0.1, 1.0), (0.0, 1.0), (0.5, 0.9), (0.5, 1.5), (float("nan"), 1.0), (0.5, 0.5, 1.0)],
)
def test_bad_steps_are_invalid_arguments(steps: tuple[float, ...]) -> None:
    with pytest.raises(InvalidRolloutArgument) as caught:
        state.start(stable(), "v0002", steps, 2)
    assert caught.value.violations[0].field == "steps"


@pytest.mark.parametrize("weight", [-0.1, 1.01, float("nan"), float("inf")])
def test_bad_weights_are_invalid_arguments(weight: float) -> None:
    with pytest.raises(InvalidRolloutArgument, match="canary_weight"):
        state.set_weight(progressing(), weight, 20)


@pytest.mark.parametrize(
    "fields",
    [
        {"phase": Phase.PROGRESSING, "stable_version": "v1", "canary_version": "", "steps": STEPS},
        {"phase": Phase.STABLE, "stable_version": "v1", "canary_weight": 0.5},
        {"phase": Phase.PROMOTED, "stable_version": "v2", "canary_version": "v3"},
        {
            "phase": Phase.PAUSED,
            "stable_version": "v1",
            "canary_version": "v2",
            "steps": STEPS,
            "current_step": 3,
        },
        {"phase": Phase.ABORTED, "canary_weight": 2.0},
    ],
)
def test_impossible_rollouts_cannot_be_made(fields: dict[str, object]) -> None:
    with pytest.raises(InvariantBroken):
        Rollout(**fields)  # type: ignore[arg-type]


def test_every_reachable_state_keeps_canary_and_stable_weights_summing_to_one() -> None:
    rollout = progressing()
    for now in range(20, 60, 10):
        arms = state.serving_arms(rollout)
        assert math.isclose(sum(arm.weight for arm in arms), 1.0)
        if not rollout.active:
            break
        rollout = state.advance(rollout, now)
    assert rollout.phase is Phase.PROMOTED


def test_the_first_stable_version_is_kept_as_the_holdout_through_every_rollout() -> None:
    rollout = stable()
    assert rollout.holdout_version == "v0001"
    assert state.serving_arms(rollout, holdout_share=0.1) == [
        state.Arm("holdout", "v0001", 0.1),
        state.Arm("stable", "v0001", 0.9),
    ]
    rollout = state.start(rollout, "v0002", STEPS, now_ms=10)
    arms = {arm.arm: arm for arm in state.serving_arms(rollout, holdout_share=0.1)}
    assert arms["holdout"] == state.Arm("holdout", "v0001", 0.1)
    assert math.isclose(arms["canary"].weight, 0.09)  # 10 % of the 90 % outside the holdout
    assert math.isclose(arms["stable"].weight, 0.81)
    rollout = state.promote(rollout, 20, full=True)
    rollout = state.undo(state.start(rollout, "v0003", STEPS, 30), 40)
    assert rollout.holdout_version == "v0001"
    assert state.serving_arms(rollout, holdout_share=0.1)[0] == state.Arm("holdout", "v0001", 0.1)


def test_no_holdout_arm_without_a_share() -> None:
    assert [arm.arm for arm in state.serving_arms(progressing())] == ["stable", "canary"]


@pytest.mark.parametrize("share", [-0.1, 1.0, math.nan])
def test_a_holdout_share_outside_the_unit_interval_is_invalid(share: float) -> None:
    with pytest.raises(InvalidRolloutArgument, match="holdout_share"):
        state.serving_arms(stable(), holdout_share=share)
