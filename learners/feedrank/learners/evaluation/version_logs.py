"""Logged decisions to judge registry versions on: each decision's exploration pool from
``feedrank.decisions`` and its final labels from ``feedrank.examples``, and the versions
themselves from the registry, as target policies (:mod:`.version_policy`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from feedrank.core.exploration import ExplorationPolicy, policy_from_name
from feedrank.core.reporting import Reporter
from feedrank.core.settings import Settings
from feedrank.learners.catalogue_replay import replay_catalogue_if_present
from feedrank.learners.evaluation.logged_data import LoggedBandit
from feedrank.learners.evaluation.version_policy import (
    DecisionSupports,
    VersionPolicy,
    bundle_scorer,
)
from feedrank.learners.feature_rejoin import PostFeatureRejoin
from feedrank.learners.sources import read_records
from feedrank.registry import LocalModelRegistry
from feedrank.registry.bundle import read_bundle
from feedrank.v1 import events_pb2


@dataclass(frozen=True)
class VersionLogs:
    """What a version is judged on, and what was left out on the way."""

    supports: DecisionSupports
    logs: LoggedBandit
    decisions_read: int
    complete: bool  # both topics read to their ends before the timeout

    def skipped_summary(self) -> str:
        skipped = self.supports.skipped
        return ", ".join(f"{count:,} {reason}" for reason, count in skipped.items()) or "none"


def read_version_logs(
    settings: Settings,
    *,
    since_ms: int | None,
    reporter: Reporter,
    rejoin: PostFeatureRejoin | None = None,
    max_decisions: int | None = None,
    timeout_s: float = 120.0,
) -> VersionLogs:
    """The decisions logged since ``since_ms`` (Kafka time; None: all kept) that have a
    final label for every shown item (the ``max_decisions`` most recent of them), with
    their pools; compact ones re-joined by ``rejoin``, else from the catalogue replayed
    now."""
    if rejoin is None:
        catalogue = replay_catalogue_if_present(
            settings, without="compact decisions cannot be re-joined", reporter=reporter
        )
        rejoin = PostFeatureRejoin(catalogue) if catalogue is not None else None
    access, topics = settings.kafka.access, settings.topics
    with reporter.working(f"reading decisions from {topics.decisions}…"):
        decisions = read_records(
            access, topics.decisions, events_pb2.Decision, since_ms=since_ms, timeout_s=timeout_s
        )
    with reporter.working(f"reading their labels from {topics.examples}…"):
        examples = read_records(
            access,
            topics.examples,
            events_pb2.LabelledExample,
            since_ms=since_ms,
            timeout_s=timeout_s,
        )
    labelled = Counter(example.decision_id for example in examples.records)
    complete = [d for d in decisions.records if labelled[d.decision_id] >= len(d.items)]
    complete.sort(key=lambda decision: decision.event_time_ms)
    chosen = complete[-max_decisions:] if max_decisions else complete
    supports = DecisionSupports.from_decisions(chosen, rejoin)
    if waiting := len(decisions.records) - len(complete):
        supports.skipped["not every shown item labelled yet"] += waiting
    return VersionLogs(
        supports=supports,
        logs=supports.logs_of(examples.records),
        decisions_read=len(decisions.records),
        complete=decisions.complete and examples.complete,
    )


def serving_policy(settings: Settings) -> ExplorationPolicy:
    """The exploration policy explore logs with (``explore.exploration`` and its settings)."""
    explore = settings.explore
    return policy_from_name(
        explore.exploration, epsilon=explore.epsilon, temperature=explore.temperature
    )


def version_policy(settings: Settings, version: str, supports: DecisionSupports) -> VersionPolicy:
    """Registry ``version`` (verified) re-ranking the decisions' pools as explore would."""
    registry = LocalModelRegistry(settings.paths.registry)
    bundle = read_bundle(registry.open_verified(version))
    return VersionPolicy(supports.by_decision, bundle_scorer(bundle), serving_policy(settings))
