"""The deploy control plane: rollout state, its durable file and the model registry.

Transport-neutral: the gRPC servicer and the canary controller both call it. Every
change runs under one lock, is written to the state file before anyone sees it, and
is appended to the history; a crash between the two leaves the old state on disk.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

from feedrank.core.clock import Clock
from feedrank.deploy import metrics, state
from feedrank.deploy.counterfactual import CounterfactualGate, GateResult, OpenGate
from feedrank.deploy.errors import (
    FieldViolation,
    InvalidRolloutArgument,
    ModelVersionNotFound,
    RegistryUnreadable,
    RolloutPreconditionFailed,
)
from feedrank.deploy.state import Arm, Phase, Rollout
from feedrank.deploy.store import DeployState, StateFile
from feedrank.registry import (
    ModelRegistry,
    VersionManifest,
    VersionNotFoundError,
    VersionPart,
    VersionRefusedError,
    version_parts,
)

Transition = Callable[[Rollout], Rollout]
CANARY_CONTROLLER = "canary-controller"
"""The actor of the steps and rollbacks the canary analysis makes."""
OUTCOMES = {
    Phase.PROMOTED: "promoted",
    Phase.ABORTED: "aborted",
    Phase.ROLLED_BACK: "rolled_back",
}


@dataclass(frozen=True)
class ControlConfig:
    default_steps: tuple[float, ...]
    salt: str
    history_limit: int = 200
    holdout_share: float = 0.0  # users kept on the first stable version (0: no holdout)
    # A candidate the counterfactual gate finds better with confidence starts at the
    # largest step up to this weight (0: always at the first step).
    confident_first_step: float = 0.0


class DeployControl:
    def __init__(
        self,
        registry: ModelRegistry,
        state_file: StateFile,
        clock: Clock,
        config: ControlConfig,
        gate: CounterfactualGate | None = None,
    ) -> None:
        self.registry = registry
        self.state_file = state_file
        self.clock = clock
        self.config = config
        self.gate = gate or OpenGate()
        self._lock = threading.Lock()
        self._state = state_file.load() or DeployState(Rollout(), ())
        self.last_analysis = ""
        _export(self._state.rollout)

    # Reads.
    def models(self) -> list[VersionManifest]:
        return self.registry.versions()

    def rollout(self) -> Rollout:
        with self._lock:
            return self._state.rollout

    def history(self) -> tuple[Rollout, ...]:
        with self._lock:
            return self._state.history

    def serving_plan(self) -> tuple[list[Arm], str]:
        return state.serving_arms(self.rollout(), self.config.holdout_share), self.config.salt

    def model_parts(self, version: str) -> Iterator[VersionPart]:
        """``version``'s manifest, then its files in chunks, for a replica to store
        (``feedrank.registry.transfer``; the replica checks every byte)."""
        if not version:
            raise InvalidRolloutArgument("version", "empty; name a registry version, e.g. v0002")
        try:
            yield from version_parts(self.registry, version)
        except VersionNotFoundError as error:
            raise ModelVersionNotFound(
                f"{error}; `feedrank rollout models` lists the versions",
                (FieldViolation("version", f"{version!r} is not in the registry"),),
            ) from error
        except VersionRefusedError as error:
            raise RolloutPreconditionFailed(f"{version} cannot be sent: {error}") from error
        except OSError as error:
            raise RegistryUnreadable(
                f"reading {version} from the registry failed: {error}"
            ) from error

    # Changes asked for by people (the CLI) or by the auto-rollout. ``actor`` names who
    # asked (an operator's token or certificate name): each state in the history keeps it.
    def start(self, version: str, steps: Sequence[float] = (), *, actor: str = "") -> Rollout:
        if not version:
            raise InvalidRolloutArgument("version", "empty; name a registry version, e.g. v0002")
        self._verify(version)
        weights = tuple(steps) or self.config.default_steps
        current = self.rollout()
        state.start(current, version, weights, self.clock.now_ms())  # fail fast, before the gate
        self.last_analysis = ""
        if current.stable_version:
            verdict = self.gate.check(current.stable_version, version)
            self.last_analysis = f"counterfactual gate: {verdict.reason}"
            if not verdict.passed:
                return self._apply(
                    lambda r: state.refuse(
                        r, version, weights, self.clock.now_ms(), verdict.reason
                    ),
                    outcome="refused",
                    actor=actor,
                )
            weights, note = self._first_step(weights, verdict)
        else:
            note = ""
        return self._apply(
            lambda r: state.start(r, version, weights, self.clock.now_ms(), note), actor=actor
        )

    def _first_step(
        self, weights: tuple[float, ...], verdict: GateResult
    ) -> tuple[tuple[float, ...], str]:
        """``weights`` from the largest step up to ``confident_first_step`` on, when the
        gate found the candidate better with confidence; else as they are."""
        limit = self.config.confident_first_step
        reachable = [weight for weight in weights if weight <= limit and weight < 1.0]
        if not verdict.better or not reachable or max(reachable) == weights[0]:
            return weights, ""
        first = max(reachable)
        note = (
            f"first step {first:.0%} instead of {weights[0]:.0%} "
            f"(deploy.confident_first_step): {verdict.reason}"
        )
        return tuple(weight for weight in weights if weight >= first), note

    def set_weight(self, weight: float, *, actor: str = "") -> Rollout:
        return self._apply(lambda r: state.set_weight(r, weight, self.clock.now_ms()), actor=actor)

    def pause(self, *, actor: str = "") -> Rollout:
        return self._apply(lambda r: state.pause(r, self.clock.now_ms()), actor=actor)

    def resume(self, *, actor: str = "") -> Rollout:
        return self._apply(lambda r: state.resume(r, self.clock.now_ms()), actor=actor)

    def promote(self, *, full: bool, actor: str = "") -> Rollout:
        return self._apply(lambda r: state.promote(r, self.clock.now_ms(), full=full), actor=actor)

    def abort(self, reason: str = "", *, actor: str = "") -> Rollout:
        return self._apply(lambda r: state.abort(r, self.clock.now_ms(), reason), actor=actor)

    def undo(self, to_version: str = "", *, actor: str = "") -> Rollout:
        if to_version:
            self._verify(to_version)
        return self._apply(
            lambda r: state.undo(r, self.clock.now_ms(), to_version),
            outcome="undone",
            actor=actor,
        )

    # Changes the canary controller makes; skipped if the rollout moved on meanwhile.
    def advance(self, seen: Rollout, reason: str) -> Rollout | None:
        return self._apply_if(seen, lambda r: state.advance(r, self.clock.now_ms(), reason))

    def roll_back(self, seen: Rollout, reason: str) -> Rollout | None:
        return self._apply_if(seen, lambda r: state.roll_back(r, self.clock.now_ms(), reason))

    def _apply_if(self, seen: Rollout, transition: Transition) -> Rollout | None:
        try:
            return self._apply(transition, expected=seen, actor=CANARY_CONTROLLER)
        except RolloutPreconditionFailed:
            return None

    def _apply(
        self,
        transition: Transition,
        expected: Rollout | None = None,
        outcome: str = "",
        *,
        actor: str,
    ) -> Rollout:
        with self._lock:
            before = self._state.rollout
            if expected is not None and before != expected:
                raise RolloutPreconditionFailed("the rollout changed since it was judged")
            after = replace(transition(before), actor=actor)
            history = (*self._state.history, after)[-self.config.history_limit :]
            updated = DeployState(after, history)
            self.state_file.save(updated)  # durable before anyone sees it
            self._state = updated
        if not outcome and before.active and after.phase in OUTCOMES:
            outcome = OUTCOMES[after.phase]
        if outcome:
            metrics.ROLLOUTS.labels(outcome=outcome).inc()
        _export(after)
        return after

    def _verify(self, version: str) -> None:
        """The version exists and passes its checksums, schema and encoding checks."""
        try:
            self.registry.open_verified(version)
        except VersionNotFoundError as error:
            raise ModelVersionNotFound(
                f"{error}; `feedrank rollout models` lists the versions"
            ) from error
        except VersionRefusedError as error:
            raise RolloutPreconditionFailed(f"{version} cannot serve: {error}") from error


def _export(rollout: Rollout) -> None:
    metrics.CANARY_WEIGHT.set(rollout.canary_weight)
    metrics.ROLLOUT_STEP.set(rollout.current_step + 1 if rollout.active else 0)
    for phase in Phase:
        metrics.ROLLOUT_PHASE.labels(phase=phase.value).set(1 if phase is rollout.phase else 0)
