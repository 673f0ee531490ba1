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
from feedrank.deploy.auto_rollout import next_candidate
from feedrank.deploy.control import DeployControl
from feedrank.deploy.slo import SloSource
from feedrank.deploy.state import Phase

log = logging.getLogger(__name__)


class AggregateTotals(Protocol):
    def totals(self, model_version: str, since_ms: int) -> ArmTotals: ...


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
    ) -> None:
        self.control = control
        self.aggregates = aggregates
        self.analysis = analysis
        self.clock = clock
        self.step_pause_ms = step_pause_ms
        self.slo = slo
        self.auto_rollout = auto_rollout
        self.keep_versions = keep_versions

    def tick(self) -> Verdict | None:
        """Judge the rollout in progress once and act; None when there is none."""
        rollout = self.control.rollout()
        if not rollout.active:
            if self.auto_rollout and (candidate := next_candidate(self.control)):
                log.info("new registry version %s: starting its rollout", candidate)
                self.control.start(candidate)
            return None
        canary = self.aggregates.totals(rollout.canary_version, rollout.started_ms)
        stable = self.aggregates.totals(rollout.stable_version, rollout.started_ms)
        levels = self.slo.canary_levels() if self.slo is not None else None
        verdict = self.analysis.judge(canary, stable, levels)
        metrics.VERDICTS.labels(verdict=verdict.kind.value).inc()
        self.control.last_analysis = f"{verdict.kind}: {verdict.summary}"
        if verdict.kind is VerdictKind.ROLLBACK:
            log.warning("rolling back %s: %s", rollout.canary_version, verdict.summary)
            self.control.roll_back(rollout, verdict.summary)
        elif verdict.kind is VerdictKind.ADVANCE and rollout.phase is Phase.PROGRESSING:
            held_ms = self.clock.now_ms() - rollout.step_started_ms
            if held_ms >= self.step_pause_ms:
                self.control.advance(rollout, "canary analysis: healthy")
        return verdict

    def prune(self) -> list[str]:
        """Delete registry versions beyond the newest ``keep_versions`` that no rollout
        needs: never the stable, canary or previous stable (undo's target) version."""
        if self.keep_versions is None:
            return []
        rollout = self.control.rollout()
        needed = {rollout.stable_version, rollout.canary_version, rollout.previous_stable}
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
