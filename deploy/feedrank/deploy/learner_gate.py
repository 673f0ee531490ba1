"""The learner's verdict, enforced: a candidate whose publishing learner found it no
longer ranking (rolling AUC below its floor) or collapsed in calibration is refused
before its first step, whatever the counterfactual gate would say.

The online learner publishes such a version anyway, marked failed in its metrics
(:class:`~feedrank.registry.publish_verdict.PublishVerdict`), so its lineage stays
whole and ``rollout models`` shows the verdict; this gate reads the mark. A version
no learner judged (``feedrank train``'s, whose AUC gate refuses to publish at all)
goes on to the next gate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from feedrank.deploy import metrics
from feedrank.deploy.counterfactual import CounterfactualGate, GateResult
from feedrank.registry.publish_verdict import PublishVerdict


class PublishVerdictGate:
    """Refuse a candidate its learner's publish gate failed; else ask ``then``."""

    def __init__(
        self, metrics_of: Callable[[str], Mapping[str, float]], then: CounterfactualGate
    ) -> None:
        self.metrics_of = metrics_of
        self.then = then

    def check(self, stable_version: str, candidate_version: str) -> GateResult:
        verdict = PublishVerdict.from_metrics(self.metrics_of(candidate_version))
        if verdict is not None and not verdict.passed:
            metrics.GATE_VERDICTS.labels(verdict="learner_refused").inc()
            return GateResult(
                False, f"its learner's publish gate failed: {verdict.summary()}", "refused"
            )
        return self.then.check(stable_version, candidate_version)
