"""Settings of the explore (Rank) service: limits, retrieval, rules, cold start."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass as pydantic_dataclass

from feedrank.core.settings.group import SettingsGroup

RULE_FILTERS = ("blocked_creator", "hidden", "reported", "seen", "sensitive", "language", "region")
"""The post-processing filters, in the order they run."""


@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class RuleSettings:
    """Which post-processing rules run and their tunables (``feedrank.explore.rules``):
    ``[explore.rules]`` in the settings, or made directly. Filters, freshness,
    diversity and fairness run in that order."""

    filters: frozenset[str] = Field(
        default=frozenset(RULE_FILTERS),
        description="Enabled filters, a subset of RULE_FILTERS; empty turns filtering off.",
    )
    freshness: bool = Field(
        default=True,
        description="Multiply scores by 1 + freshness_weight * 2 ** (-age_hours / half_life).",
    )
    freshness_half_life_hours: float = Field(
        default=24.0, gt=0, description="Post age at which the freshness boost has halved."
    )
    freshness_weight: float = Field(
        default=0.3, ge=0, description="Boost of a brand-new post (0.3: its score x 1.3)."
    )
    top_n: int = Field(
        default=50, ge=1, description="The window diversity and fairness act on (>= the limit)."
    )
    creator_cap: bool = Field(
        default=True, description="Move a creator's posts beyond max_per_creator below the top N."
    )
    max_per_creator: int = Field(
        default=2,
        ge=1,
        description="Most posts one creator may have in the top N (when enough others exist).",
    )
    mmr: bool = Field(
        default=False,
        description="Pick the top N by maximal marginal relevance over content embeddings.",
    )
    mmr_lambda: float = Field(
        default=0.7, ge=0, le=1, description="MMR trade-off: 1 pure relevance, 0 pure novelty."
    )
    mmr_pool_size: int = Field(
        default=200, ge=1, description="MMR picks the top N among this many best-scored."
    )
    fairness: bool = Field(
        default=True, description="Small-creator exposure floor and cap within the top N."
    )
    small_creator_followers: float = Field(
        default=10_000.0, gt=0, description="A creator with fewer followers (raw) is small."
    )
    small_creator_floor: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Least share of the top N for small creators, when eligible ones exist.",
    )
    small_creator_cap: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Largest share of the top N for small creators, when others exist.",
    )

    def __post_init__(self) -> None:
        unknown = self.filters - set(RULE_FILTERS)
        if unknown:
            raise ValueError(f"unknown filters {sorted(unknown)}; known: {RULE_FILTERS}")
        if self.small_creator_floor > self.small_creator_cap:
            raise ValueError("need 0 <= small_creator_floor <= small_creator_cap <= 1")


@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class ColdStartSettings:
    """The policy served before the first registry version (``[explore.cold_start]``):
    popularity x freshness x topic match, no trained weights (docs/explore.md, "Cold
    start")."""

    half_life_hours: float = Field(
        default=24.0, gt=0, description="Post age at which a post's cold-start score has halved."
    )
    mismatch_weight: float = Field(
        default=3.0,
        ge=0,
        description="Topic mismatch penalty of the cold-start score: a post sharing none of the "
        "user's history topics scores exp(-weight) times one matching them fully (0: topics "
        "do not rank; a user without history is never penalised).",
    )
    retrieval_freshness: float = Field(
        default=0.25,
        gt=0,
        description="Weight of post freshness next to topic match in cold-start retrieval "
        "(below 0.5 a post matching the user's topics fully outranks one sharing none, "
        "whatever their ages; a user without history gets the newest posts).",
    )


class ExploreSettings(SettingsGroup):
    """The explore (Rank) service: request limits, retrieval, exploration, workers."""

    default_limit: int = Field(default=50, ge=1, description="Items returned when limit is 0.")
    max_limit: int = Field(default=500, ge=1, description="Largest limit a request may ask for.")
    candidates: int = Field(default=1000, ge=1, description="Candidates retrieved per request.")
    max_post_age_days: float = Field(default=30.0, gt=0, description="Older posts are ineligible.")
    exploration: Literal["greedy", "epsilon_greedy", "plackett_luce"] = Field(
        default="epsilon_greedy", description="Exploration policy of the logging policy."
    )
    epsilon: float = Field(default=0.1, ge=0.0, le=1.0, description="Epsilon of epsilon-greedy.")
    temperature: float = Field(default=0.1, gt=0, description="Plackett-Luce temperature.")
    workers: int = Field(default=2, ge=1, description="gRPC worker processes (SO_REUSEPORT).")
    worker_threads: int = Field(
        default=4,
        ge=1,
        description="gRPC handler threads per worker (more only contend for the GIL: "
        "each worker is one core).",
    )
    max_message_bytes: int = Field(
        default=64 * 1024, ge=1024, description="Largest RankRequest accepted (bytes)."
    )
    log_queue_limit: int = Field(
        default=100_000, ge=1, description="Decisions buffered while Kafka is slow or down."
    )
    log_linger_ms: int = Field(
        default=200,
        ge=0,
        le=5_000,
        description="How long a decision waits to share a produce request with others "
        "(the broker's CPU is per request; the join waits minutes anyway). With "
        "decision_delivery 'acked' at most 5 ms counts: there the caller waits it out.",
    )
    decision_delivery: Literal["queued", "acked"] = Field(
        default="queued",
        description="When a Rank call answers: 'queued', once its decision is in the "
        "producer's memory queue (a replica killed then loses the decisions of the calls "
        "it answered in the last log_linger_ms or so); 'acked', once Kafka acknowledged it "
        "(acks=all), so every decision_id a client holds is on topics.decisions, for about "
        "a linger (<= 5 ms) and a broker round trip more per call.",
    )
    decision_ack_timeout_ms: int = Field(
        default=2_000,
        ge=1,
        le=60_000,
        description="With decision_delivery 'acked', the longest a call waits for its "
        "decision's acknowledgement: then it answers anyway (the decision stays queued and "
        "is delivered later), counted in feedrank_decision_log_answered_unacked_total, and "
        "later calls do not wait until Kafka acknowledges a decision again.",
    )
    decision_features: Literal["compact", "full"] = Field(
        default="compact",
        description="What a logged decision carries: compact, each shown post's catalogue "
        "version and the impression's own values, and the user's features typed (learners "
        "re-join the rest from the catalogue, docs/contracts.md); full, every post feature "
        "and the user's by name (~7x the bytes).",
    )
    log_pool: bool = Field(
        default=True,
        description="Also log the exploration pool's items not shown (Decision.pool): the "
        "whole support of the logged propensities, so `feedrank evaluate --version` and the "
        "counterfactual gate can replay a model over it. Costs about 50 bytes per unshown "
        "pool item (none when the limit is at least the pool).",
    )
    api_keys_file: Path | None = Field(
        default=None,
        description="Per-app API keys Rank requires (JSON, `feedrank api-keys add APP` "
        "writes it; read again when it changes); unset: Rank takes every caller.",
    )
    deploy_address: str | None = Field(
        default=None,
        description="host:port of Deploy.GetServingPlan to follow; unset: use plan_file.",
    )
    plan_file: Path | None = Field(
        default=None,
        description="JSON serving plan to follow when no deploy_address is set; "
        "neither set: serve the initial model only.",
    )
    model_source: Literal["registry", "deploy"] = Field(
        default="registry",
        description="Where the plan's model versions come from: 'registry', the registry "
        "directory (paths.registry_dir) on this machine; 'deploy', Deploy.FetchModel at "
        "deploy_address, into model_cache_dir (replicas with no disk shared with the registry).",
    )
    model_cache_dir: Path | None = Field(
        default=None,
        description="Where model_source 'deploy' keeps the versions it fetched; one per "
        "replica, its workers share it (default: <state_dir>/explore/model-cache).",
    )
    model_cache_versions: int = Field(
        default=4,
        ge=1,
        description="Versions the model cache keeps after a fetch (the newest ones), plus "
        "any opened in the last 15 minutes.",
    )
    model_fetch_timeout_s: float = Field(
        default=300.0, gt=0, description="Deadline of one whole Deploy.FetchModel download."
    )
    plan_poll_interval_s: float = Field(
        default=2.0, gt=0, description="How often each worker reads the serving plan."
    )
    plan_timeout_s: float = Field(
        default=2.0, gt=0, description="Deadline of one GetServingPlan call."
    )
    refused_retry_s: float = Field(
        default=300.0,
        gt=0,
        description="How long a refused plan waits before it is tried again (unless it changes).",
    )
    recall_threshold: float = Field(
        default=0.9,
        ge=0.0,
        le=1.0,
        description="Least ANN recall@recall_k against exact search a new version needs.",
    )
    recall_k: int = Field(
        default=100,
        ge=1,
        description="Candidates per user in a new version's smoke and recall checks.",
    )
    check_users: int = Field(
        default=16, ge=1, description="Users scored in a new version's smoke and recall checks."
    )
    loader_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="Niceness of the thread that loads new versions (serving stays first).",
    )
    feature_updates: bool = Field(
        default=True,
        description="Each worker applies topics.rewards and topics.decisions to its feature "
        "store (engagement, impressions, hides, reports, blocks).",
    )
    feature_replay_days: float = Field(
        default=7.0,
        ge=0,
        description="At start-up, each worker replays this much of both topics (by Kafka "
        "record time) before tailing them; older blocks and hides are not seen (0: none).",
    )
    catalogue_replay_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description="At start-up the service replays topics.posts, topics.users and "
        "topics.graph to their ends before serving; it gives up (and does not start) "
        "after this many seconds.",
    )
    rules: RuleSettings = Field(
        default_factory=RuleSettings, description="Post-processing rules ([explore.rules])."
    )
    cold_start: ColdStartSettings = Field(
        default_factory=ColdStartSettings,
        description="The policy served before a plan names a registry version "
        "([explore.cold_start]).",
    )
