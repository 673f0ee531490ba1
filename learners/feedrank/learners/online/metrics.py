"""Prometheus metrics of the online learner (served on ports.learner_metrics, 9101)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EXAMPLES = Counter("feedrank_learner_examples", "Labelled examples applied to the models.")
REJECTED = Counter(
    "feedrank_learner_examples_rejected", "Examples skipped: undecodable or invalid inputs."
)
REJOIN_SKIPPED = Counter(
    "feedrank_learner_rejoin_skipped",
    "Compact shown items not learned: the catalogue lacks their post version (by reason).",
    ["reason"],
)


UPDATE_SECONDS = Histogram(
    "feedrank_learner_update_seconds",
    "Time of one micro-batch update (decode, score, step).",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
LOSS = Gauge("feedrank_learner_loss", "Training loss of the latest micro-batch.")
ROLLING_AUC = Gauge("feedrank_learner_rolling_auc", "Progressive-validation ROC AUC (rolling).")
ROLLING_LOG_LOSS = Gauge(
    "feedrank_learner_rolling_log_loss", "Progressive-validation log loss (rolling)."
)
CALIBRATION = Gauge(
    "feedrank_learner_calibration_ratio", "Mean prediction over engagement rate (rolling)."
)
DRIFT_EVENTS = Counter("feedrank_learner_drift_events", "ADWIN drift detections on the loss.")
CHECKPOINTS = Counter("feedrank_learner_checkpoints", "Durable checkpoints written.")
CHECKPOINT_SECONDS = Histogram(
    "feedrank_learner_checkpoint_seconds",
    "Time to write a checkpoint and commit offsets.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
VERSIONS = Counter("feedrank_learner_versions_published", "Registry versions published.")
RETRAINS = Counter(
    "feedrank_learner_retrains",
    "Batch retrains the learner started that ended, by trigger (schedule, drift) and "
    "outcome (published, below_gate, failed, stopped with the learner).",
    ["trigger", "outcome"],
)
PUBLISH_GATE = Counter(
    "feedrank_learner_publish_gate",
    "Publish-gate verdicts on the versions published (failed: deploy refuses them).",
    ["verdict"],
)
LAST_PUBLISH = Gauge(
    "feedrank_learner_last_publish_timestamp_seconds", "Wall time of the latest publish."
)
KAFKA_UP = Gauge(
    "feedrank_learner_kafka_up",
    "1 while the learner reaches Kafka (its last request succeeded), 0 during an outage.",
)
EVENT_LAG = Gauge(
    "feedrank_learner_event_lag_seconds",
    "Wall time now minus the label time of the newest example applied.",
)


def count_rejoin_skip(reason: str) -> None:
    """``PostFeatureRejoin.on_skip`` of the online learner."""
    REJOIN_SKIPPED.labels(reason=reason).inc()


OPE_ESTIMATES = Counter(
    "feedrank_learner_ope_estimates",
    "Off-policy estimates of versions before publishing, by outcome (estimated, no_data: "
    "no labelled decisions or no stable version among them, no_reference: the stable "
    "version unreadable).",
    ["outcome"],
)
