"""Typed settings: the one place for ports, topics, paths, the reward window and the clock.

Values come, highest priority first, from keyword overrides (CLI flags), environment
variables prefixed ``FEEDRANK_`` (nested groups joined by ``__``, e.g.
``FEEDRANK_KAFKA__BROKER_PORT=19092``), a TOML file (``--config`` or
``FEEDRANK_CONFIG``) and the defaults below. Unknown keys are rejected everywhere.
"""

from __future__ import annotations

import itertools
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

CONFIG_FILE_ENV = "FEEDRANK_CONFIG"
LOOPBACK = "127.0.0.1"

DAY_MS = 24 * 3600 * 1000


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSettings(_Group):
    """Where clients find Kafka, and how the embedded local broker runs."""

    bootstrap_servers: str | None = Field(
        default=None,
        description="Kafka bootstrap servers; unset means the embedded local broker.",
    )
    broker_port: int = Field(default=9092, ge=1, le=65535, description="Local broker client port.")
    controller_port: int = Field(
        default=9093, ge=1, le=65535, description="Local broker KRaft controller port."
    )
    broker_heap_mb: int = Field(default=512, ge=128, description="Local broker JVM heap (MiB).")
    kafka_version: str = Field(default="4.1.1", description="Apache Kafka release (kafka_2.13).")
    ready_timeout_s: float = Field(
        default=90.0, gt=0, description="How long to wait for the broker to answer metadata."
    )

    @property
    def bootstrap(self) -> str:
        """The bootstrap string every client uses."""
        return self.bootstrap_servers or f"{LOOPBACK}:{self.broker_port}"


class TopicSettings(_Group):
    """Topic names (the public contract), partitions and retention."""

    decisions: str = Field(default="feedrank.decisions", description="One event per Rank call.")
    rewards: str = Field(default="feedrank.rewards", description="Engagement events from apps.")
    examples: str = Field(default="feedrank.examples", description="Labelled examples (join).")
    metrics: str = Field(default="feedrank.metrics", description="5-minute aggregates.")
    dlq: str = Field(default="feedrank.dlq", description="Dead letters.")
    posts: str = Field(
        default="feedrank.posts", description="The catalogue from apps (compacted by post_id)."
    )
    users: str = Field(default="feedrank.users", description="Users from apps (compacted).")
    graph: str = Field(
        default="feedrank.graph",
        description="Follows, blocks and hidden creators from apps (kept whole, keyed by user).",
    )
    partitions: int = Field(default=3, ge=1, description="Partitions of every feedrank topic.")
    replication_factor: int = Field(default=1, ge=1, description="1 on the local broker.")
    event_retention_days: float = Field(
        default=15.0,
        ge=15.0,
        description="Retention of decisions and rewards: the 14-day reward window plus a day.",
    )
    derived_retention_days: float = Field(
        default=7.0, gt=0, description="Retention of examples, metrics and dead letters."
    )

    def names(self) -> list[str]:
        return [
            self.decisions,
            self.rewards,
            self.examples,
            self.metrics,
            self.dlq,
            *self.entities(),
        ]

    def entities(self) -> list[str]:
        """The catalogue topics apps produce to: posts, users, graph."""
        return [self.posts, self.users, self.graph]


class PortSettings(_Group):
    """gRPC and Prometheus ports, all bound on 127.0.0.1 by default."""

    bind_host: str = Field(
        default=LOOPBACK, description="Interface servers bind; 0.0.0.0 inside a container."
    )
    ranking_grpc: int = Field(default=50051, ge=1, le=65535, description="Ranking gRPC.")
    deploy_grpc: int = Field(default=50052, ge=1, le=65535, description="Deploy control gRPC.")
    explore_metrics: int = Field(default=9100, ge=1, le=65535, description="Explore /metrics.")
    learner_metrics: int = Field(default=9101, ge=1, le=65535, description="Learner /metrics.")
    deploy_metrics: int = Field(default=9102, ge=1, le=65535, description="Deploy /metrics.")
    streaming_metrics: int = Field(default=9103, ge=1, le=65535, description="Join /metrics.")


class PathSettings(_Group):
    """Where the local stack keeps its state and where fetched jars are cached."""

    state_dir: Path = Field(
        default=Path(".feedrank"),
        description="Project-owned state: Kafka data, pid files, logs.",
    )
    jar_cache: Path = Field(
        default=Path.home() / ".cache" / "feedrank" / "jars",
        description="Jars fetched through Maven (outside git).",
    )

    registry_dir: Path | None = Field(
        default=None,
        description="Model registry root (default: <state_dir>/registry).",
    )

    @property
    def registry(self) -> Path:
        return self.registry_dir or self.state_dir / "registry"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def kafka_data_dir(self) -> Path:
        return self.state_dir / "kafka"

    @property
    def flink_checkpoint_dir(self) -> Path:
        return self.state_dir / "flink" / "checkpoints"

    @property
    def flink_savepoint_dir(self) -> Path:
        return self.state_dir / "flink" / "savepoints"


class FlinkSettings(_Group):
    """The PyFlink mini-cluster and its Kafka connector."""

    connector_version: str = Field(
        default="5.0.0-2.2", description="org.apache.flink:flink-sql-connector-kafka version."
    )
    parallelism: int = Field(default=2, ge=1, description="Default job parallelism.")
    checkpoint_interval_s: float = Field(default=5.0, gt=0, description="Checkpoint interval.")


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


class ExploreSettings(_Group):
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
        "(the broker's CPU is per request; the join waits minutes anyway).",
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


class WorldSettings(_Group):
    """Size and seed of the simulated world the demo and benchmarks serve."""

    num_users: int = Field(default=10_000, ge=1, description="Simulated users.")
    num_creators: int = Field(default=2_000, ge=1, description="Simulated creators.")
    num_posts: int = Field(default=100_000, ge=1, description="Simulated posts.")
    seed: int = Field(default=7, description="Seed of the world and behaviour model.")
    start_ms: int = Field(
        default=0,
        ge=0,
        description="Epoch ms the world starts at; 0: when the process starts. "
        "`feedrank up` pins one value so every process sees the same posts.",
    )
    behaviour_seed: int = Field(default=11, description="Seed of the simulated users' draws.")
    publish_ahead_days: float = Field(
        default=0.0,
        ge=0,
        description="Days after the start over which new posts keep appearing (a long demo "
        "needs fresh posts, or engagement decays with the catalogue's age).",
    )

    def start_or(self, now_ms: int) -> int:
        return self.start_ms or now_ms


class JoinSettings(_Group):
    """The streaming join: event-time tolerances and where its checkpoints live."""

    max_skew_s: float = Field(
        default=60.0, ge=0, description="A reward this long before its decision still joins."
    )
    dangling_wait_s: float = Field(
        default=300.0, gt=0, description="How long a reward waits for its decision."
    )
    tombstone_hours: float = Field(
        default=24.0,
        gt=0,
        description="How long a closed decision is remembered (late vs dangling).",
    )
    out_of_orderness_s: float = Field(
        default=5.0, ge=0, description="Bounded out-of-orderness of the event-time watermark."
    )
    idleness_s: float = Field(
        default=10.0, gt=0, description="A partition idle this long stops holding the watermark."
    )
    aggregate_window_minutes: int = Field(
        default=5, ge=1, description="Event-time window of the aggregates on topics.metrics."
    )
    top_posts: int = Field(
        default=10, ge=0, description="Most engaged posts per aggregate window (0: none)."
    )


class DeploySettings(_Group):
    """The deploy control service: rollout steps, automatic canary analysis, the arm salt."""

    state_file: Path | None = Field(
        default=None,
        description="Durable rollout state (JSON; default: <state_dir>/deploy/rollout.json).",
    )
    steps: list[float] = Field(
        default=[0.01, 0.05, 0.25, 0.5, 1.0],
        description="Default canary weights of a rollout, increasing, in (0, 1], ending at 1.",
    )
    step_pause_s: float = Field(
        default=300.0, ge=0, description="Least time a step holds before it may advance."
    )
    salt: str = Field(
        default="feedrank-arms-1",
        min_length=1,
        description="Salt of the user-id hash that assigns users to stable or canary.",
    )
    analysis: bool = Field(
        default=True, description="Judge canaries automatically (advance, promote, roll back)."
    )
    auto_rollout: bool = Field(
        default=False,
        description="Start a rollout of each new registry version when none is active "
        "(the closed-loop demo turns it on).",
    )
    analysis_interval_s: float = Field(
        default=10.0, gt=0, description="How often the controller judges a running canary."
    )
    min_impressions: int = Field(
        default=5_000, ge=1, description="Impressions each arm needs before any verdict."
    )
    alpha: float = Field(
        default=0.05, gt=0, lt=1, description="False-alarm rate of each always-valid test."
    )
    mixture_effect: float = Field(
        default=0.25,
        gt=0,
        description="Relative effect the sequential test is tuned for (its mixture scale).",
    )
    rollback_on_engagement_drop: bool = Field(
        default=True, description="A significant drop of the engagement rate also rolls back."
    )
    max_error_rate: float = Field(
        default=0.01, ge=0, le=1, description="Error-rate SLO of the canary (non-OK / calls)."
    )
    max_latency_p99_s: float = Field(
        default=0.25, gt=0, description="p99 Rank latency SLO of the canary (seconds)."
    )
    min_requests: int = Field(
        default=200, ge=1, description="Canary calls needed before the SLOs are judged."
    )
    gate_min_effective_samples: float = Field(
        default=500.0, ge=0, description="Least effective sample size of a counterfactual gate."
    )
    prometheus_url: str | None = Field(
        default=None,
        description="Prometheus HTTP API for error-rate and latency SLOs; unset: not judged.",
    )
    history_limit: int = Field(default=200, ge=1, description="Rollout history entries kept.")
    settle_s: float = Field(
        default=900.0,
        ge=0,
        description="After a step changes the split, the canary analysis ignores this "
        "long (event time): engagements still come from the previous split's impressions. "
        "Also the join's prompt horizon: the analysis compares engagements that came "
        "within this long of their impression.",
    )
    keep_versions: int = Field(
        default=20,
        ge=3,
        description="Registry versions kept: the newest this many, plus the stable, canary, "
        "previous stable and holdout ones; older versions are deleted.",
    )
    holdout_share: float = Field(
        default=0.0,
        ge=0,
        lt=0.5,
        description="Share of users kept on the first version ever made stable, for good "
        "(a long-term holdout: what the learned versions gain over a static model); "
        "rollouts share the rest. 0: no holdout.",
    )

    @field_validator("steps")
    @classmethod
    def _increasing_steps(cls, value: list[float]) -> list[float]:
        ordered = all(earlier < later for earlier, later in itertools.pairwise(value))
        if not value or not ordered or value[0] <= 0 or value[-1] != 1.0:
            raise ValueError("steps must increase within (0, 1] and end at 1.0, e.g. [0.1, 1.0]")
        return value


class TimeSettings(_Group):
    """Event time: the reward window and which clock components use."""

    reward_window: timedelta = Field(
        default=timedelta(days=14),
        description="How long after a decision a reward still counts: seconds or ISO 8601 (P14D).",
    )
    clock: Literal["system", "simulated"] = Field(
        default="system", description="'simulated' lets the simulator drive event time."
    )

    @field_validator("reward_window", mode="before")
    @classmethod
    def _seconds_from_text(cls, value: object) -> object:
        """Environment values arrive as text: accept plain seconds ("30") there too."""
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return value
        return value

    @field_validator("reward_window")
    @classmethod
    def _positive_window(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("reward_window must be positive, e.g. 'P14D' or 1209600 (seconds)")
        return value

    @property
    def reward_window_ms(self) -> int:
        return int(self.reward_window.total_seconds() * 1000)


class LearnerSettings(_Group):
    """The learners: the online learner's loop and the batch trainer's defaults."""

    state_dir: Path | None = Field(
        default=None,
        description="Online learner checkpoints (default: <state_dir>/learner).",
    )
    group_id: str = Field(
        default="feedrank-learner", description="Kafka consumer group of the online learner."
    )
    micro_batch_size: int = Field(
        default=512, ge=1, description="Examples per online update (one optimiser step)."
    )
    checkpoint_every_examples: int = Field(
        default=50_000, ge=1, description="Examples between durable checkpoints (and commits)."
    )
    checkpoint_every_s: float = Field(
        default=30.0, gt=0, description="Seconds between checkpoints when examples trickle in."
    )
    publish_every_examples: int = Field(
        default=200_000, ge=1, description="Examples between published registry versions."
    )
    publish_every_s: float = Field(
        default=30.0,
        gt=0,
        description="Seconds between published versions (if any news); an engagement "
        "reaches a version about half this plus the join's checkpoint interval later.",
    )
    feedback: Literal["fake_negatives", "complete"] = Field(
        default="fake_negatives",
        description="fake_negatives: learn each shown item as a negative from "
        "topics.decisions at impression and as a positive when it is engaged (keeps the "
        "stream in step with time); complete: learn the join's final labels only.",
    )
    learning_rate: float = Field(
        default=3e-4,
        gt=0,
        description="Adam learning rate of the online learner (3e-4: at 1e-3 the demo's "
        "learned versions served below the bootstrap they continued from).",
    )
    weight_decay: float = Field(
        default=1e-5, ge=0, description="L2 weight decay on dense weights (not id tables)."
    )
    time_context: bool = Field(
        default=True,
        description="The ranker's hour-of-day and weekday inputs, for freshly made models "
        "(off: zeros, and training no longer depends on when the history was logged).",
    )
    inverse_propensity: bool = Field(
        default=False, description="Weight online examples by 1 / logging propensity."
    )
    max_propensity_weight: float = Field(
        default=20.0, ge=1, description="Clip of the inverse-propensity weight."
    )
    user_id_buckets: int = Field(
        default=1 << 18, ge=1, description="Hashed user-id buckets of a freshly made model."
    )
    post_id_buckets: int = Field(
        default=1 << 19, ge=1, description="Hashed post-id buckets of a freshly made model."
    )
    monitor_window: int = Field(
        default=2_000, ge=1, description="Examples in the rolling AUC / log loss window."
    )
    adwin_delta: float = Field(
        default=0.002, gt=0, lt=1, description="ADWIN confidence for drift on the loss."
    )
    retrain_on_drift: bool = Field(
        default=False, description="Start `feedrank train --from-kafka` when drift is detected."
    )
    torch_threads: int = Field(
        default=1, ge=1, description="Torch intra-op threads (small models: 1 is fastest)."
    )
    batch_size: int = Field(default=128, ge=1, description="Batch size of `feedrank train`.")
    batch_learning_rate: float = Field(
        default=3e-4,
        gt=0,
        description="Adam learning rate of `feedrank train` and the bootstrap. Class "
        "balancing weighs each rare positive 10-40x; at 1e-3 they overfit within an epoch.",
    )
    max_epochs: int = Field(default=10, ge=1, description="Epoch limit of `feedrank train`.")
    patience: int = Field(
        default=2, ge=1, description="Epochs without a better validation loss before stopping."
    )
    lr_decay: float = Field(
        default=0.8, gt=0, le=1, description="Learning-rate factor applied after every epoch."
    )
    validation_share: float = Field(
        default=0.2, gt=0, lt=1, description="Latest share of examples held out to validate."
    )
    min_auc: float = Field(
        default=0.80, ge=0, le=1, description="AUC below which `feedrank train` won't publish."
    )
    bootstrap_examples: int = Field(
        default=0,
        ge=0,
        description="`feedrank up` with an empty registry first trains a model on this many "
        "simulated historical examples (0: serve an untrained model until one is learned).",
    )
    bootstrap_rounds: int = Field(
        default=1,
        ge=1,
        le=5,
        description="Rounds of bootstrap history: round 1 is logged uniformly at random, "
        "each later one by the model trained on the rounds before (`feedrank train "
        "--rounds`), as a feed's logs are. All of it ends before the world starts.",
    )
    history_decision_interval_s: float = Field(
        default=2.0,
        gt=0,
        description="Event time between decisions of simulated history (`feedrank train "
        "--simulate`). Match the served traffic's density, or the posts' engagement "
        "counts grow at another pace than they will when served; a history shorter than a "
        "week leaves hours and weekdays the model never saw.",
    )
    bootstrap_min_auc: float = Field(
        default=0.60,
        ge=0,
        le=1,
        description="AUC gate of the bootstrap model; below it `feedrank up` stops. Lower "
        "than min_auc: uniformly logged history is mostly poor matches, which caps AUC "
        "(0.66 in the demo's world for a model that ranks at 0.73x the oracle).",
    )


class Settings(BaseSettings):
    """Every setting of feedrank, grouped by concern."""

    model_config = SettingsConfigDict(
        env_prefix="FEEDRANK_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    ports: PortSettings = PortSettings()
    paths: PathSettings = PathSettings()
    flink: FlinkSettings = FlinkSettings()
    explore: ExploreSettings = ExploreSettings()
    world: WorldSettings = WorldSettings()
    join: JoinSettings = JoinSettings()
    time: TimeSettings = TimeSettings()
    deploy: DeploySettings = DeploySettings()
    learner: LearnerSettings = LearnerSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Flags beat the environment, which beats the file; no .env or secrets dirs.
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings from overrides, the environment and an optional TOML file.

    ``config_file`` takes precedence over ``FEEDRANK_CONFIG``. A missing file is an
    error rather than silently ignored.
    """
    _reject_unknown_environment()
    env_file = os.environ.get(CONFIG_FILE_ENV)
    path = config_file or (Path(env_file) if env_file else None)
    if path is None:
        return Settings(**overrides)
    if not path.is_file():
        raise FileNotFoundError(f"settings file {path} does not exist")

    class SettingsFromFile(Settings):
        model_config = SettingsConfigDict(**{**Settings.model_config, "toml_file": path})

    return SettingsFromFile(**overrides)


def _reject_unknown_environment() -> None:
    """Fail on a ``FEEDRANK_`` variable that names no setting (pydantic ignores those)."""
    known = {f"FEEDRANK_{name.upper()}" for name in Settings.model_fields} | {CONFIG_FILE_ENV}
    unknown = sorted(
        key for key in os.environ if key.startswith("FEEDRANK_") and key.split("__")[0] not in known
    )
    if unknown:
        groups = ", ".join(sorted(known - {CONFIG_FILE_ENV}))
        raise ValueError(
            f"unknown settings in the environment: {', '.join(unknown)}; "
            f"groups are {groups} (nested with '__', e.g. FEEDRANK_KAFKA__BROKER_PORT)"
        )


def settings_to_environment(settings: Settings) -> dict[str, str]:
    """``FEEDRANK_*`` variables that rebuild ``settings`` in a child process."""
    environment: dict[str, str] = {}
    for group, values in settings.model_dump().items():
        _to_environment(f"FEEDRANK_{group.upper()}", values, environment)
    return environment


def _to_environment(prefix: str, values: dict[str, Any], environment: dict[str, str]) -> None:
    for name, value in values.items():
        key = f"{prefix}__{name.upper()}"
        if value is None:
            continue
        if isinstance(value, dict):  # a nested group, e.g. explore.rules
            _to_environment(key, value, environment)
        elif isinstance(value, (set, frozenset, list, tuple)):
            items = sorted(value) if isinstance(value, (set, frozenset)) else list(value)
            environment[key] = json.dumps(items)
        else:
            text = str(value.total_seconds() if isinstance(value, timedelta) else value)
            environment[key] = text
