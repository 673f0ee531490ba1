"""Prometheus metrics of the explore service (names prefixed ``feedrank_``, base units).

With several worker processes, ``PROMETHEUS_MULTIPROC_DIR`` must be set before this
module is imported; the supervisor then serves all workers' metrics aggregated on one
``/metrics`` endpoint (see ``feedrank.explore.workers``). No user or post ids in labels.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
    0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip
COUNT_BUCKETS = (0, 1, 5, 10, 25, 50, 100, 250, 500, 750, 1000, 2000, 5000)

RANK_REQUESTS = Counter(
    "feedrank_rank_requests", "Rank calls by gRPC status code and arm.", ["code", "arm"]
)
RANK_LATENCY = Histogram(
    "feedrank_rank_latency_seconds",
    "Rank call latency, end to end, by arm.",
    ["arm"],
    buckets=LATENCY_BUCKETS,
)
STAGE_LATENCY = Histogram(
    "feedrank_rank_stage_latency_seconds",
    "Latency of each ranking stage (features, retrieve, rank, post_process, explore, log).",
    ["stage"],
    buckets=LATENCY_BUCKETS,
)
CANDIDATES = Histogram(
    "feedrank_rank_candidates",
    "Candidates per request after each stage (retrieved, post_processed, shown).",
    ["stage"],
    buckets=COUNT_BUCKETS,
)
RULE_DROPS = Counter(
    "feedrank_rank_rule_dropped_candidates", "Candidates removed by each filter rule.", ["rule"]
)
RULE_REORDERS = Counter(
    "feedrank_rank_rule_reordered_candidates",
    "Candidates moved by each reordering rule.",
    ["rule"],
)
DECISIONS_LOGGED = Counter(
    "feedrank_decision_log_produced", "Decisions queued for feedrank.decisions."
)
DECISIONS_DELIVERED = Counter("feedrank_decision_log_delivered", "Decisions acknowledged by Kafka.")
DECISIONS_DROPPED = Counter(
    "feedrank_decision_log_dropped",
    "Decisions dropped because the bounded log queue was full (Kafka slow or down).",
)
DECISION_LOG_ERRORS = Counter(
    "feedrank_decision_log_errors", "Decisions Kafka failed to acknowledge in time."
)
DECISIONS_ANSWERED_UNACKED = Counter(
    "feedrank_decision_log_answered_unacked",
    "With explore.decision_delivery 'acked': Rank calls answered without Kafka's "
    "acknowledgement of their decision, by reason: timeout (none within "
    "explore.decision_ack_timeout_ms; the decision stays queued), stalled (not waited for: "
    "an earlier call timed out and Kafka has acknowledged nothing since; queued too), "
    "error (Kafka failed it), dropped (the log queue was full).",
    ["reason"],
)
DECISION_LOG_QUEUE = Gauge(
    "feedrank_decision_log_queue_depth",
    "Decisions waiting for a Kafka acknowledgement.",
    multiprocess_mode="livesum",
)
MODEL_INFO = Gauge(
    "feedrank_model_info",
    "1 for each model version a worker serves.",
    ["version", "arm"],
    multiprocess_mode="livemax",
)

# Hot swap and traffic split (model_slots.py, plan_follower.py, model_loader.py).
LOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
MODEL_SWAPS = Counter(
    "feedrank_explore_model_swaps",
    "Serving plans a worker acted on, by outcome: swapped (new versions loaded and "
    "switched in), reweighted (weights or salt only), refused (a version failed its "
    "checks; the current one keeps serving), failed (an unexpected error while loading), "
    "unavailable (a version could not be fetched yet; tried again at the next poll).",
    ["outcome"],
)
MODEL_LOAD_SECONDS = Histogram(
    "feedrank_explore_model_load_seconds",
    "Time to load and verify one model version in the background (successful loads).",
    buckets=LOAD_BUCKETS,
)
SERVED_VERSIONS = Gauge(
    "feedrank_explore_served_versions",
    "Worker processes serving each model version, by arm.",
    ["arm", "version"],
    multiprocess_mode="livesum",
)
ARM_WEIGHT = Gauge(
    "feedrank_explore_arm_weight",
    "Traffic share (0..1) of each arm in the plan being served.",
    ["arm"],
    multiprocess_mode="livemax",
)
MODEL_REFUSED = Gauge(
    "feedrank_explore_model_refused",
    "1 for each version a worker refused, with the check it failed (the reason is logged).",
    ["version", "check"],
    multiprocess_mode="livemax",
)
MODEL_FETCHES = Counter(
    "feedrank_explore_model_fetches",
    "Versions a worker opened with explore.model_source 'deploy', by outcome: fetched "
    "(downloaded from Deploy.FetchModel and verified), cached (already in the replica's "
    "cache), refused (the bytes disagreed with their manifest: nothing kept, the current "
    "version keeps serving), not_found, unavailable (deploy unreachable or busy: retried).",
    ["outcome"],
)
MODEL_FETCH_BYTES = Counter(
    "feedrank_explore_model_fetch_bytes", "Model file bytes downloaded and verified."
)
MODEL_FETCH_SECONDS = Histogram(
    "feedrank_explore_model_fetch_seconds",
    "Time to download and verify one model version (successful fetches).",
    buckets=LOAD_BUCKETS,
)
PLAN_FETCH_ERRORS = Counter(
    "feedrank_explore_plan_fetch_errors",
    "Serving-plan reads that failed (deploy service unreachable, unreadable plan file).",
)

# Feature updates from the event streams (feature_updates.py): per worker, since every
# worker reads both topics into its own store.
FEATURE_EVENTS_APPLIED = Counter(
    "feedrank_explore_feature_events_applied",
    "Events a worker applied to its feature store, by kind: reward (engagements, hides, "
    "reports, blocks) or decision (impressions of the shown posts).",
    ["kind"],
)
FEATURE_EVENTS_SKIPPED = Counter(
    "feedrank_explore_feature_events_skipped",
    "Records a worker did not apply, by kind and reason: undecodable (the join "
    "dead-letters them), unknown_post (not in this catalogue), rejected (by the store), "
    "error (an unexpected failure, logged), consumer_error (a Kafka error, no record).",
    ["kind", "reason"],
)
FEATURE_UNKNOWN_POSTS = Counter(
    "feedrank_explore_feature_unknown_posts",
    "Post ids in rewards or shown in decisions that are not in the catalogue (ignored).",
    ["kind"],
)
FEATURE_EVENT_TIME = Gauge(
    "feedrank_explore_feature_event_time_seconds",
    "Latest event time applied to the feature store, by kind; the furthest-behind worker. "
    "Event time: simulated time in the demo.",
    ["kind"],
    multiprocess_mode="livemin",
)
FEATURE_LAG = Gauge(
    "feedrank_explore_feature_lag_records",
    "Records of the rewards or decisions topic a worker has not applied yet, by kind; "
    "the furthest-behind worker.",
    ["kind"],
    multiprocess_mode="livemax",
)

# The catalogue topics (catalogue_index.py, catalogue_source.py): per worker, since every
# worker tails feedrank.posts, feedrank.users and feedrank.graph into its own state.
CATALOGUE_EVENTS = Counter(
    "feedrank_explore_catalogue_events",
    "Catalogue records a worker read, by topic and outcome: applied, or rejected (sent to "
    "the dead-letter topic: malformed, mis-keyed or older than the state).",
    ["topic", "outcome"],
)
CATALOGUE_INDEXED = Counter(
    "feedrank_explore_catalogue_indexed_posts",
    "Posts a worker's catalogue feed added to (upsert) or removed from (delete) the "
    "served models' ANN indexes.",
    ["change"],
)
CATALOGUE_INDEX_SECONDS = Histogram(
    "feedrank_explore_catalogue_index_seconds",
    "Time to embed and index one batch of catalogue changes in every served model.",
    buckets=LATENCY_BUCKETS,
)
CATALOGUE_POSTS = Gauge(
    "feedrank_explore_catalogue_posts",
    "Posts in a worker's catalogue by state: live (upserted, may be served) or deleted; "
    "the smallest over workers.",
    ["state"],
    multiprocess_mode="livemin",
)
