"""Judge a version before it is published: its paired off-policy estimate against the
stable version on the most recent logged decisions, for deploy's counterfactual gate.

The reference is the version that served most of those decisions on the stable arm;
both re-rank the same decisions' pools (:mod:`.version_policy`) and the paired DR
difference goes into the new version's metrics
(:class:`~feedrank.registry.off_policy.PairedEstimate`), with item weights (the
cascade's products leave no effective samples at ε-greedy's weights). Without labelled
decisions, or without a stable version among them, there is no estimate (counted and
said why); the gate then lets the version through and says so.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

from feedrank.core.arms import STABLE_ARM
from feedrank.core.reporting import Reporter
from feedrank.core.settings import Settings
from feedrank.learners.evaluation.report import compare
from feedrank.learners.evaluation.version_logs import read_version_logs, serving_policy
from feedrank.learners.evaluation.version_policy import (
    DecisionSupports,
    VersionPolicy,
    bundle_scorer,
)
from feedrank.learners.feature_rejoin import PostFeatureRejoin
from feedrank.learners.sources import ExampleSourceError
from feedrank.registry import ModelBundle, ModelRegistry, RegistryError, read_bundle
from feedrank.registry.off_policy import PairedEstimate

log = logging.getLogger("feedrank.learners")


class CounterfactualJudge:
    """``judge(bundle)``: the estimate's registry metrics, or {} when there is none."""

    def __init__(
        self,
        settings: Settings,
        registry: ModelRegistry,
        rejoin: PostFeatureRejoin | None,
        *,
        on_outcome: Callable[[str], None] = lambda outcome: None,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.rejoin = rejoin
        self.on_outcome = on_outcome
        self.wall_ms = wall_ms
        self._bundles: dict[str, ModelBundle] = {}

    def __call__(self, bundle: ModelBundle) -> dict[str, float]:
        learner = self.settings.learner
        try:
            loaded = read_version_logs(
                self.settings,
                since_ms=self.wall_ms() - int(learner.ope_window_s * 1000),
                reporter=Reporter.logging_to(log),
                rejoin=self.rejoin,
                max_decisions=learner.ope_max_decisions,
            )
        except ExampleSourceError as error:  # e.g. replayed examples with no decisions topic
            log.info("no off-policy estimate: %s", error)
            self.on_outcome("no_data")
            return {}
        reference = stable_reference(loaded.supports)
        if loaded.logs.num_rows == 0 or reference is None:
            log.info(
                "no off-policy estimate: %s labelled decisions, stable version %s (left out: %s)",
                loaded.logs.num_decisions,
                reference or "unknown",
                loaded.skipped_summary(),
            )
            self.on_outcome("no_data")
            return {}
        try:
            reference_bundle = self._bundle(reference)
        except RegistryError as error:
            log.warning("no off-policy estimate: the stable version %s: %s", reference, error)
            self.on_outcome("no_reference")
            return {}
        by_decision, policy = loaded.supports.by_decision, serving_policy(self.settings)
        comparison = compare(
            loaded.logs,
            VersionPolicy(by_decision, bundle_scorer(bundle), policy),
            VersionPolicy(by_decision, bundle_scorer(reference_bundle), policy),
            weighting="item",
        )
        candidate = comparison.candidate.by_name()["DR"]
        difference = comparison.difference
        self.on_outcome("estimated")
        return PairedEstimate(
            value=candidate.value,
            std_error=candidate.std_error,
            reference=reference,
            reference_value=comparison.reference.by_name()["DR"].value,
            difference=difference.value,
            difference_std_error=difference.std_error,
            effective_samples=difference.ess,
            decisions=loaded.logs.num_decisions,
        ).to_metrics()

    def _bundle(self, version: str) -> ModelBundle:
        if version not in self._bundles:
            self._bundles = {version: read_bundle(self.registry.open_verified(version))}
        return self._bundles[version]


def stable_reference(supports: DecisionSupports) -> str | None:
    """The version that served most of the decisions on the stable arm."""
    served = Counter(
        support.model_version
        for support in supports.by_decision.values()
        if support.arm == STABLE_ARM and support.model_version
    )
    return served.most_common(1)[0][0] if served else None
