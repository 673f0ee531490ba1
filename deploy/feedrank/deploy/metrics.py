"""Prometheus metrics of the deploy service (names prefixed ``feedrank_``, base units).

Versions are not labels (they grow without bound); the rollout's versions are in
``feedrank rollout status`` and the service's log.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CANARY_WEIGHT = Gauge("feedrank_deploy_canary_weight", "Share of traffic the canary serves.")
ROLLOUT_STEP = Gauge(
    "feedrank_deploy_rollout_step", "1-based step of the rollout in progress (0: none)."
)
ROLLOUT_PHASE = Gauge(
    "feedrank_deploy_rollout_phase", "1 for the rollout's current phase, 0 otherwise.", ["phase"]
)
ROLLOUTS = Counter(
    "feedrank_deploy_rollouts",
    "Finished rollouts by outcome (promoted, aborted, rolled_back, refused, undone).",
    ["outcome"],
)
VERDICTS = Counter(
    "feedrank_deploy_analysis_verdicts",
    "Canary analysis verdicts (continue, advance, rollback).",
    ["verdict"],
)
AGGREGATES_READ = Counter(
    "feedrank_deploy_aggregates_read", "Engagement aggregates read from feedrank.metrics."
)
AGGREGATES_REJECTED = Counter(
    "feedrank_deploy_aggregates_rejected", "Records on feedrank.metrics that did not decode."
)
KAFKA_UP = Gauge(
    "feedrank_deploy_kafka_up",
    "1 while the aggregate feed reaches Kafka, 0 during an outage (analysis then waits).",
)
REQUESTS = Counter(
    "feedrank_deploy_requests", "Deploy gRPC calls by method and status code.", ["method", "code"]
)
MODEL_BYTES_SENT = Counter(
    "feedrank_deploy_model_bytes_sent",
    "Registry file bytes streamed to explore replicas by FetchModel.",
)
VERSIONS_PRUNED = Counter(
    "feedrank_deploy_registry_versions_pruned",
    "Registry versions deleted by retention (deploy.keep_versions; never what serves).",
)
GATE_VERDICTS = Counter(
    "feedrank_deploy_gate_verdicts",
    "Gate verdicts before a canary's first step: the counterfactual gate's (passed, "
    "refused, skipped) and the learner's publish verdict enforced (learner_refused).",
    ["verdict"],
)
for _verdict in (
    "passed",
    "refused",
    "skipped",
    "learner_refused",
):  # at 0 from the start: the first one counts
    GATE_VERDICTS.labels(verdict=_verdict)
GATE_DIFFERENCE = Gauge(
    "feedrank_deploy_gate_difference",
    "The last judged candidate's estimated reward per slot minus the stable version's.",
)
