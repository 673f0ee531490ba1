"""The rollout state machine: pure Python, no I/O, time passed in as event-time ms.

::

    STABLE/PROMOTED/ABORTED/ROLLED_BACK --start--> PROGRESSING (step 0, weight steps[0])
    PROGRESSING --advance (pause over, analysis healthy)--> PROGRESSING (next step)
    PROGRESSING --advance past the last step, or promote --full--> PROMOTED
    PROGRESSING <--pause / resume--> PAUSED       (set-weight also pauses)
    PROGRESSING/PAUSED --abort--> ABORTED         (canary weight 0 at once)
    PROGRESSING/PAUSED --roll_back (analysis)--> ROLLED_BACK (canary weight 0 at once)
    any --undo [--to V]--> STABLE (V, default the previous stable; no canary)

The first version ever started becomes stable at once: there is nothing to compare it
with. It also becomes the **holdout** version for good: with ``deploy.holdout_share``
set, that share of users keeps being served by it through every later rollout (a
long-term holdout, so what the learned versions gain over a static model is measured
on the same days, not against the past). Every state is checked against the invariants
when it is made, so no transition can produce, and no state file can load, an impossible
rollout.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from feedrank.core.arms import CANARY_ARM, HOLDOUT_ARM, STABLE_ARM
from feedrank.deploy.errors import (
    DeployError,
    InvalidRolloutArgument,
    RolloutPreconditionFailed,
)


class Phase(StrEnum):
    STABLE = "stable"
    PROGRESSING = "progressing"
    PAUSED = "paused"
    PROMOTED = "promoted"
    ABORTED = "aborted"
    ROLLED_BACK = "rolled_back"


ACTIVE_PHASES = frozenset({Phase.PROGRESSING, Phase.PAUSED})
HEALTHY_PHASES = frozenset({Phase.STABLE, Phase.PROMOTED})


class InvariantBroken(DeployError):
    """A rollout that cannot exist (a bug, or a hand-edited state file)."""


@dataclass(frozen=True)
class Rollout:
    stable_version: str = ""
    canary_version: str = ""
    phase: Phase = Phase.STABLE
    canary_weight: float = 0.0
    steps: tuple[float, ...] = ()
    current_step: int = 0
    message: str = "no version deployed yet"
    updated_ms: int = 0
    started_ms: int = 0  # when the rollout began: analysis reads aggregates from here
    step_started_ms: int = 0  # when the current step began: its pause counts from here
    previous_stable: str = ""  # what undo restores
    holdout_version: str = ""  # the first stable version, kept for the holdout arm
    actor: str = ""  # who made this change: a token's or certificate's name, or a machine

    def __post_init__(self) -> None:
        check_invariants(self)

    @property
    def active(self) -> bool:
        return self.phase in ACTIVE_PHASES

    @property
    def healthy(self) -> bool:
        return self.phase in HEALTHY_PHASES


@dataclass(frozen=True)
class Arm:
    arm: str
    model_version: str
    weight: float


def check_invariants(rollout: Rollout) -> None:
    """Raise InvariantBroken naming the first rule ``rollout`` breaks."""
    problems = []
    if not math.isfinite(rollout.canary_weight) or not 0.0 <= rollout.canary_weight <= 1.0:
        problems.append(f"canary_weight {rollout.canary_weight} outside [0, 1]")
    if rollout.steps:
        try:
            validate_steps(rollout.steps)
        except InvalidRolloutArgument as error:
            problems.append(error.message)
    if rollout.active:
        if not rollout.stable_version or not rollout.canary_version:
            problems.append(f"a {rollout.phase} rollout needs a stable and a canary version")
        if rollout.canary_version == rollout.stable_version:
            problems.append("the canary must differ from the stable version")
        if not 0 <= rollout.current_step < len(rollout.steps):
            problems.append(f"current_step {rollout.current_step} outside the steps")
    elif rollout.canary_weight != 0.0:
        problems.append(f"a {rollout.phase} rollout serves no canary traffic")
    if rollout.phase is Phase.PROMOTED and rollout.canary_version:
        problems.append("a promoted rollout has no canary left")
    if problems:
        raise InvariantBroken(f"impossible rollout: {'; '.join(problems)}")


def validate_steps(steps: Sequence[float]) -> tuple[float, ...]:
    """Steps as a tuple: increasing canary weights in (0, 1] that end at 1.0."""
    values = tuple(float(step) for step in steps)
    accepted = "increasing weights in (0, 1] ending at 1.0, e.g. 0.01,0.05,0.25,0.5,1.0"
    if not values:
        raise InvalidRolloutArgument("steps", f"none given; want {accepted}")
    if not all(math.isfinite(step) and 0.0 < step <= 1.0 for step in values):
        raise InvalidRolloutArgument("steps", f"{list(values)} leave (0, 1]; want {accepted}")
    if any(later <= earlier for earlier, later in itertools.pairwise(values)):
        raise InvalidRolloutArgument("steps", f"{list(values)} do not increase; want {accepted}")
    if values[-1] != 1.0:
        raise InvalidRolloutArgument("steps", f"{list(values)} stop short of 1.0; want {accepted}")
    return values


def validate_weight(weight: float) -> float:
    if not math.isfinite(weight) or not 0.0 <= weight <= 1.0:
        raise InvalidRolloutArgument("canary_weight", f"{weight} is not a share in [0, 1]")
    return weight


def start(
    rollout: Rollout, version: str, steps: Sequence[float], now_ms: int, note: str = ""
) -> Rollout:
    """Begin a canary of ``version`` at its first step (or make it stable, if first);
    ``note`` says why the steps are what they are, when that needs saying."""
    if not version:
        raise InvalidRolloutArgument("version", "empty; name a registry version, e.g. v0002")
    if rollout.active:
        raise RolloutPreconditionFailed(
            f"a rollout of {rollout.canary_version} is already {rollout.phase}; "
            "promote, abort or undo it first"
        )
    if version == rollout.stable_version:
        raise RolloutPreconditionFailed(f"{version} is already the stable version")
    weights = validate_steps(steps)
    if not rollout.stable_version:
        return Rollout(
            stable_version=version,
            phase=Phase.STABLE,
            message=f"{version} is the first version: stable at once, no canary",
            updated_ms=now_ms,
            started_ms=now_ms,
            step_started_ms=now_ms,
            holdout_version=version,
        )
    return Rollout(
        stable_version=rollout.stable_version,
        canary_version=version,
        phase=Phase.PROGRESSING,
        canary_weight=weights[0],
        steps=weights,
        current_step=0,
        message=f"canary {version} at step 1/{len(weights)} ({weights[0]:.0%})"
        + (f"; {note}" if note else ""),
        updated_ms=now_ms,
        started_ms=now_ms,
        step_started_ms=now_ms,
        previous_stable=rollout.previous_stable,
        holdout_version=rollout.holdout_version,
    )


def refuse(
    rollout: Rollout, version: str, steps: Sequence[float], now_ms: int, why: str
) -> Rollout:
    """Record a rollout stopped before its first step (e.g. by the counterfactual gate)."""
    proposed = start(rollout, version, steps, now_ms)  # same preconditions as a start
    return replace(
        proposed,
        phase=Phase.ABORTED,
        canary_weight=0.0,
        message=f"{version} refused before its first step: {why}",
    )


def set_weight(rollout: Rollout, weight: float, now_ms: int) -> Rollout:
    """Hold the canary at ``weight`` by hand; the rollout pauses until resumed."""
    _require_active(rollout, "set a canary weight")
    weight = validate_weight(weight)
    return replace(
        rollout,
        phase=Phase.PAUSED,
        canary_weight=weight,
        message=f"canary {rollout.canary_version} set to {weight:.1%} by hand; paused",
        updated_ms=now_ms,
    )


def pause(rollout: Rollout, now_ms: int) -> Rollout:
    _require_active(rollout, "pause")
    return replace(
        rollout,
        phase=Phase.PAUSED,
        message=f"paused at {rollout.canary_weight:.1%} canary traffic",
        updated_ms=now_ms,
    )


def resume(rollout: Rollout, now_ms: int) -> Rollout:
    if rollout.phase is not Phase.PAUSED:
        raise RolloutPreconditionFailed(
            f"only a paused rollout resumes; this one is {rollout.phase}"
        )
    return replace(
        rollout,
        phase=Phase.PROGRESSING,
        message=f"resumed at {rollout.canary_weight:.1%} canary traffic",
        updated_ms=now_ms,
    )


def advance(rollout: Rollout, now_ms: int, reason: str = "") -> Rollout:
    """The next step above the current weight, or promotion after the last one."""
    _require_active(rollout, "advance")
    following = [
        index
        for index in range(rollout.current_step + 1, len(rollout.steps))
        if rollout.steps[index] > rollout.canary_weight
    ]
    if not following:
        return promote(rollout, now_ms, full=True, reason=reason)
    index = following[0]
    note = f" ({reason})" if reason else ""
    return replace(
        rollout,
        canary_weight=rollout.steps[index],
        current_step=index,
        message=(
            f"canary {rollout.canary_version} at step {index + 1}/{len(rollout.steps)} "
            f"({rollout.steps[index]:.0%}){note}"
        ),
        updated_ms=now_ms,
        step_started_ms=now_ms,
    )


def promote(rollout: Rollout, now_ms: int, *, full: bool, reason: str = "") -> Rollout:
    """Skip to the next step, or with ``full`` make the canary the stable version now."""
    _require_active(rollout, "promote")
    if not full:
        return advance(rollout, now_ms, reason or "promoted by hand")
    note = f" ({reason})" if reason else ""
    return replace(
        rollout,
        stable_version=rollout.canary_version,
        canary_version="",
        phase=Phase.PROMOTED,
        canary_weight=0.0,
        current_step=len(rollout.steps) - 1,
        message=f"{rollout.canary_version} promoted to stable{note}",
        updated_ms=now_ms,
        step_started_ms=now_ms,
        previous_stable=rollout.stable_version,
    )


def abort(rollout: Rollout, now_ms: int, reason: str = "") -> Rollout:
    """Send canary traffic to 0 now; the stable version serves everyone."""
    _require_active(rollout, "abort")
    return replace(
        rollout,
        phase=Phase.ABORTED,
        canary_weight=0.0,
        message=f"canary {rollout.canary_version} aborted: {reason or 'by hand'}",
        updated_ms=now_ms,
    )


def roll_back(rollout: Rollout, now_ms: int, reason: str) -> Rollout:
    """What the canary analysis does on a significant regression: like abort, automatic."""
    _require_active(rollout, "roll back")
    return replace(
        rollout,
        phase=Phase.ROLLED_BACK,
        canary_weight=0.0,
        message=f"canary {rollout.canary_version} rolled back: {reason}",
        updated_ms=now_ms,
    )


def undo(rollout: Rollout, now_ms: int, to_version: str = "") -> Rollout:
    """Make ``to_version`` the stable version with no canary.

    By default: during a rollout, the stable version it started from (the canary is
    dropped); otherwise the stable version before the current one.
    """
    default = rollout.stable_version if rollout.active else rollout.previous_stable
    target = to_version or default
    if not target:
        raise RolloutPreconditionFailed(
            f"there is no previous stable version to return to (stable: "
            f"{rollout.stable_version or 'none'}); name one with --to"
        )
    if target == rollout.stable_version and not rollout.active:
        raise RolloutPreconditionFailed(f"{target} is already the stable version")
    dropped = f"; canary {rollout.canary_version} dropped" if rollout.active else ""
    return Rollout(
        stable_version=target,
        phase=Phase.STABLE,
        message=f"undo: {target} is stable again (was {rollout.stable_version or 'none'}){dropped}",
        updated_ms=now_ms,
        started_ms=now_ms,
        step_started_ms=now_ms,
        previous_stable=(
            rollout.stable_version if rollout.stable_version != target else rollout.previous_stable
        ),
        holdout_version=rollout.holdout_version,
    )


def serving_arms(rollout: Rollout, holdout_share: float = 0.0) -> list[Arm]:
    """What explore workers serve: the stable arm, plus the canary while one is active,
    plus the holdout arm at ``holdout_share`` (the rollout's arms share the rest)."""
    if not rollout.stable_version:
        return []
    if not 0.0 <= holdout_share < 1.0:
        raise InvalidRolloutArgument("holdout_share", f"{holdout_share} is not a share in [0, 1)")
    holdout = holdout_share if rollout.holdout_version else 0.0
    rest = 1.0 - holdout
    arms = [Arm(HOLDOUT_ARM, rollout.holdout_version, holdout)] if holdout > 0 else []
    if not rollout.active:
        return [*arms, Arm(STABLE_ARM, rollout.stable_version, rest)]
    return [
        *arms,
        Arm(STABLE_ARM, rollout.stable_version, rest * (1.0 - rollout.canary_weight)),
        Arm(CANARY_ARM, rollout.canary_version, rest * rollout.canary_weight),
    ]


def _require_active(rollout: Rollout, action: str) -> None:
    if not rollout.active:
        raise RolloutPreconditionFailed(
            f"cannot {action}: no rollout in progress (phase {rollout.phase}); "
            "start one with `feedrank rollout start VERSION`"
        )
