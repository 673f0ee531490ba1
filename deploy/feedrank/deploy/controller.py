"""The canary controller: judges a running rollout and moves it on.

At every tick it sums each arm's 5-minute aggregates since the rollout began, reads
the canary's service levels, asks the analysis for a verdict and acts on it:

* ``rollback``: rolls the canary back at once (also while paused: safety first);
* ``advance``: once the current step has held ``step_pause_s``, moves to the next step;
  past the last step (100%), promotes the canary to stable;
* ``continue``: waits.

With ``auto_rollout`` it also starts a rollout of each new registry version when none
is active (see ``auto_rollout.py``). With ``keep_versions`` it deletes old registry
versions that no rollout can need any more (retention: learners publish every minute).

Engagements are counted when they happen, seconds to days after their impressions, so
right after the traffic split changes each arm's engagements still come from the old
split's impressions: the arm that just grew looks worse and the one that shrank looks
better (in the demo, every healthy canary was rolled back). So the controller judges
only windows that start ``settle_ms`` (event time) after the current step began, when
both arms' flows follow the current split again; evidence starts afresh at every step.
At 100% (no stable traffic to compare with) it judges the previous step's windows.

The arms are fixed sets of users, and one may hold users who engage more whatever they
are shown. With a ``pre_period`` source (the same users' totals from before the
rollout), that difference is taken off each comparison (``corrected_rate_difference``).

It changes the rollout only if nobody else did since it looked (see
``DeployControl.advance``), so a person's abort or pause always wins a race.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from feedrank.core.clock import Clock
from feedrank.deploy import metrics
from feedrank.deploy.analysis import ArmTotals, CanaryAnalysis, Verdict, VerdictKind
from feedrank.deploy.auto_rollout import AUTO_ROLLOUT, next_candidate
from feedrank.deploy.control import DeployControl
from feedrank.deploy.slo import SloSource
from feedrank.deploy.state import Phase, Rollout

log = logging.getLogger(__name__)


class AggregateTotals(Protocol):
    def totals(
        self, model_version: str, since_ms: int, until_ms: int | None = None
    ) -> ArmTotals: ...

    def latest_event_ms(self) -> int:
        """The end of the latest window seen (event time; 0 before any)."""
        ...


class PrePeriod(Protocol):
    def before(
        self, rollout: Rollout, canary_weight: float, until_ms: int
    ) -> tuple[ArmTotals, ArmTotals] | None:
        """From before ``until_ms`` (event time: when ``rollout`` began), the totals of
        the users a canary of ``canary_weight`` holds and of those stable holds (None:
        not known)."""
        ...


class RolloutController:
    def __init__(
        self,
        control: DeployControl,
        aggregates: AggregateTotals,
        analysis: CanaryAnalysis,
        clock: Clock,
        *,
        step_pause_ms: int,
        slo: SloSource | None = None,
        auto_rollout: bool = False,
        keep_versions: int | None = None,
        settle_ms: int = 0,
        pre_period: PrePeriod | None = None,
    ) -> None:
        self.control = control
        self.aggregates = aggregates
        self.analysis = analysis
        self.clock = clock
        self.step_pause_ms = step_pause_ms
        self.slo = slo
        self.auto_rollout = auto_rollout
        self.keep_versions = keep_versions
        self.settle_ms = settle_ms
        self.pre_period = pre_period
        self._step: tuple[str, int, int] | None = None  # (canary, step, started) judged
        self._step_event_ms = 0  # event time when that step was first seen
        self._previous_step_event_ms = 0  # ... and the step before it
        self._rollout_event_ms = 0  # ... and the rollout's first step

    def tick(self) -> Verdict | None:
        """Judge the rollout in progress once and act; None when there is none."""
        rollout = self.control.rollout()
        if not rollout.active:
            if self.auto_rollout and (candidate := next_candidate(self.control)):
                log.info("new registry version %s: starting its rollout", candidate)
                self.control.start(candidate, actor=AUTO_ROLLOUT)
            return None
        # Aggregates are in event time (a simulator's clock may run ahead of this
        # process's): a step begins, in event time, where the aggregates were when the
        # controller first saw it; it is judged from ``settle_ms`` after that.
        if (rollout.canary_version, rollout.current_step, rollout.step_started_ms) != self._step:
            self._mark_step(rollout)  # a step this controller has not seen begin
        since_ms, until_ms = self._step_event_ms + self.settle_ms, None
        judged_weight = rollout.canary_weight
        if rollout.canary_weight >= 1.0:  # no stable traffic: the last split's evidence
            since_ms = self._previous_step_event_ms + self.settle_ms
            until_ms = self._step_event_ms
            judged_weight = rollout.steps[max(rollout.current_step - 1, 0)]
        canary = self.aggregates.totals(rollout.canary_version, since_ms, until_ms)
        stable = self.aggregates.totals(rollout.stable_version, since_ms, until_ms)
        levels = self.slo.canary_levels() if self.slo is not None else None
        before = (
            self.pre_period.before(rollout, judged_weight, self._rollout_event_ms)
            if self.pre_period is not None
            else None
        )
        verdict = self.analysis.judge(canary, stable, levels, before)
        metrics.VERDICTS.labels(verdict=verdict.kind.value).inc()
        self.control.last_analysis = f"{verdict.kind}: {verdict.summary}"
        if verdict.kind is VerdictKind.ROLLBACK:
            log.warning("rolling back %s: %s", rollout.canary_version, verdict.summary)
            self.control.roll_back(rollout, verdict.summary)
        elif verdict.kind is VerdictKind.ADVANCE and rollout.phase is Phase.PROGRESSING:
            held_ms = self.clock.now_ms() - rollout.step_started_ms
            if held_ms >= self.step_pause_ms:
                advanced = self.control.advance(rollout, "canary analysis: healthy")
                if advanced is not None and advanced.active:  # the new split starts here
                    self._mark_step(advanced)
        return verdict

    def _mark_step(self, rollout: Rollout) -> None:
        """Remember where, in event time, ``rollout``'s current step began: the latest
        aggregate seen (before any, this process's clock is the best guess)."""
        same_rollout = self._step is not None and self._step[0] == rollout.canary_version
        self._previous_step_event_ms = self._step_event_ms if self._step else 0
        self._step = (rollout.canary_version, rollout.current_step, rollout.step_started_ms)
        self._step_event_ms = self.aggregates.latest_event_ms() or self.clock.now_ms()
        if not same_rollout:  # a restarted controller may first see a later step
            first = rollout.current_step == 0
            self._rollout_event_ms = (
                self._step_event_ms if first else min(self._step_event_ms, rollout.started_ms)
            )

    def prune(self) -> list[str]:
        """Delete registry versions beyond the newest ``keep_versions`` that no rollout
        needs: never the stable, canary, previous stable (undo's target) or holdout
        version."""
        if self.keep_versions is None:
            return []
        rollout = self.control.rollout()
        needed = {
            rollout.stable_version,
            rollout.canary_version,
            rollout.previous_stable,
            rollout.holdout_version,
        }
        removed = self.control.registry.prune(
            keep_newest=self.keep_versions, protected=needed - {""}
        )
        if removed:
            metrics.VERSIONS_PRUNED.inc(len(removed))
            log.info("registry retention deleted %s", ", ".join(removed))
        return removed

    def run(self, stop: threading.Event, interval_s: float) -> None:
        """Tick (and prune) every ``interval_s`` until ``stop`` is set; errors are logged,
        not fatal."""
        while not stop.wait(interval_s):
            try:
                self.tick()
                self.prune()
            except Exception:  # the loop must outlive one bad look
                log.exception("canary analysis failed; retrying at the next tick")
