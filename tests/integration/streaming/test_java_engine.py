"""The join's Java engine against its Python operator: the same input, the same output.

One seeded workload covers the paths of ``join_logic``: positives (a first engagement,
later ones that change nothing), breakdowns of every reward type (dwell summed),
repeated posts in one decision, rewards before their decision, late and dangling
rewards, rewards for posts a decision did not show,
duplicate decisions, malformed decisions (bytes, a missing user, a propensity out of
range) and segment aggregates under a salt. Each engine runs it as a bounded job on
the real mini-cluster and broker; their examples, dead letters and aggregates must be
equal, message for message (a parse error's wording aside: protobuf's Python and Java
runtimes word it differently; and sums of dwell seconds to the microsecond: their last
bits depend on the order the aggregates add them in).
"""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from pathlib import Path

from confluent_kafka import Producer
from google.protobuf.message import DecodeError

from feedrank.core import codecs
from feedrank.core.codecs import Headers
from feedrank.core.metrics_kinds import AGGREGATE_KIND, METRICS_KIND_HEADER
from feedrank.core.settings import Settings
from feedrank.stack.jars import JarLocations
from feedrank.stack.kafka_broker import KafkaBroker
from feedrank.streaming.flink_environment import FlinkJobOptions, create_stream_environment
from feedrank.streaming.join_job import JoinJobConfig, JoinTopics, build_join_job
from feedrank.streaming.join_logic import JoinConfig
from feedrank.v1 import events_pb2
from tests.support.kafka import CommittedReader, TopicFactory

T0 = 1_764_000_000_000
WINDOW_MS = 20_000
REWARD_TYPES = ("view", "like", "comment", "share", "save", "dwell", "hide", "report", "block")
PARSE_ERROR = "not a protobuf Decision:"


def workload(seed: int = 7) -> tuple[list[bytes], list[tuple[int, bytes]]]:
    """Decisions and rewards (protobuf and JSON) exercising every path of the join.

    Each input is in event-time order, so what is late or dangling does not depend on
    how far each input's watermark got when a record arrived: the rewards before their
    decision stay within the skew, and their decision comes before the watermark
    could declare them dangling. A decision's rewards share a partition (returned with
    each reward), so which of two engagements at one time labels an item is decided.
    """
    rng = random.Random(seed)
    decisions: list[bytes] = []
    rewards: list[tuple[int, int, bytes]] = []
    for index in range(80):
        time_ms = T0 + index * 700
        posts = [f"p{rng.randrange(40)}" for _ in range(rng.randint(1, 9))]
        decision = events_pb2.Decision(
            decision_id=f"d{index}",
            user_id=f"user-{index % 23}",
            event_time_ms=time_ms,
            model_version=f"v{index % 3}",
            arm=("stable", "canary")[index % 2],
            exploration_policy=events_pb2.EXPLORATION_POLICY_PLACKETT_LUCE,
            item_feature_names=["ctr", "age_hours"],
            user_features=events_pb2.FeatureVector(values=[0.25, float(index)]),
            items=[
                events_pb2.ShownItem(
                    post_id=post,
                    position=position,
                    score=rng.random(),
                    propensity=rng.uniform(0.01, 1.0),
                    features=events_pb2.FeatureVector(values=[rng.random(), 2.0]),
                    catalogue_version=3,
                )
                for position, post in enumerate(posts)
            ],
        )
        decisions.append(codecs.encode(decision))
        if index % 17 == 0:
            decisions.append(codecs.encode(decision))  # delivered twice
        for _ in range(rng.randint(0, 6)):
            kind = rng.choice(REWARD_TYPES)
            offset_ms = rng.choice((-500, 100, 900, 5_000, WINDOW_MS - 1, WINDOW_MS + 5))
            post = rng.choice([*posts, "never-shown"] if rng.random() < 0.1 else posts)
            reward = events_pb2.Reward(
                decision_id=decision.decision_id,
                post_id=post,
                user_id=decision.user_id,
                type=codecs.REWARD_TYPES[kind],
                value=round(rng.uniform(0.5, 30.0), 3) if kind == "dwell" else 1.0,
                ts_ms=time_ms + offset_ms,
            )
            rewards.append((reward.ts_ms, index % 2, codecs.encode(reward)))
    dangling = json.dumps(
        {
            "decision_id": "nowhere",
            "post_id": "p1",
            "user_id": "ü",
            "type": "like",
            "value": 1e-05,
            "ts_ms": T0 + 1_000,
        }
    ).encode()
    rewards.append((T0 + 1_000, 0, dangling))
    no_user = events_pb2.Decision(decision_id="bad-user", event_time_ms=T0, items=[])
    bad_propensity = events_pb2.Decision(
        decision_id="bad-p",
        user_id="u",
        event_time_ms=T0,
        items=[events_pb2.ShownItem(post_id="p1", propensity=1.5)],
    )
    decisions += [b"\xff\xffnot a decision", codecs.encode(no_user), codecs.encode(bad_propensity)]
    # The clock moves on past every window (and tombstone), so the final watermark closes all.
    last = events_pb2.Decision(
        decision_id="last",
        user_id="u",
        event_time_ms=T0 + 600_000,
        items=[events_pb2.ShownItem(post_id="p0", propensity=1.0)],
    )
    decisions.append(codecs.encode(last))
    ordered = sorted(rewards, key=lambda reward: reward[0])  # stable: ties keep their order
    return decisions, [(partition, value) for _, partition, value in ordered]


def run_join(
    kafka: KafkaBroker,
    settings: Settings,
    new_topic: TopicFactory,
    consume: CommittedReader,
    engine_jar: Path | None,
) -> dict[str, Counter[bytes]]:
    """Run the workload through one engine; its outputs, each a multiset of messages."""
    name = "java" if engine_jar else "python"
    topics = JoinTopics(
        new_topic(f"{name}-decisions", 2),
        new_topic(f"{name}-rewards", 2),
        new_topic(f"{name}-examples", 2),
        new_topic(f"{name}-dlq"),
        new_topic(f"{name}-metrics"),
    )
    decisions, rewards = workload()
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "enable.idempotence": True})
    for position, value in enumerate(decisions):
        producer.produce(topics.decisions, value=value, partition=position % 2)
    for partition, value in rewards:
        producer.produce(topics.rewards, value=value, partition=partition)
    assert producer.flush(30) == 0
    stream_env, table_env = create_stream_environment(
        settings,
        FlinkJobOptions(parallelism=2, checkpoint_interval_s=1.0),
        extra={"restart-strategy.type": "none"},
    )
    run_id = uuid.uuid4().hex[:8]
    config = JoinJobConfig(
        bootstrap=kafka.bootstrap,
        topics=topics,
        join=JoinConfig(
            reward_window_ms=WINDOW_MS,
            max_skew_ms=1_000,
            dangling_wait_ms=10_000,
            tombstone_ms=60_000,
            prompt_horizon_ms=1_000,
            segment_salt="feedrank-arms-1",
        ),
        group_id=f"join-{name}-{run_id}",
        transactional_id_prefix=f"join-{name}-{run_id}",
        bounded=True,
        out_of_orderness_ms=1_000,
        java_engine_jar=engine_jar,
    )
    build_join_job(stream_env, table_env, config)
    stream_env.execute(f"join-{name}")
    return {
        kind: Counter(
            canonical(record.value() or b"", kind, record.headers(), record.key() or b"")
            for record in consume.read(topic, at_most=5_000, timeout_s=30, idle_s=3)
        )
        for kind, topic in (
            ("examples", topics.examples),
            ("dlq", topics.dlq),
            ("metrics", topics.metrics or ""),
        )
    }


def canonical(value: bytes, kind: str, headers: Headers, key: bytes) -> bytes:
    """A record as comparable bytes: an example re-encoded deterministically with its key
    and content type (the engines write examples through different sinks), a dead
    letter with its error header (a parse error's wording cut), an aggregate with its
    kind header."""
    if kind == "examples":
        content_type = codecs.header_value(headers, codecs.CONTENT_TYPE_HEADER) or ""
        example = codecs.encode(codecs.decode(events_pb2.LabelledExample, value))
        return key + b"|" + content_type.encode() + b"|" + example
    if kind == "metrics":
        record_kind = codecs.header_value(headers, METRICS_KIND_HEADER) or ""
        if record_kind == AGGREGATE_KIND:  # its sums of floats depend on arrival order
            aggregate = events_pb2.EngagementAggregate.FromString(value)
            aggregate.dwell_seconds = round(aggregate.dwell_seconds, 6)
            aggregate.engagement_rate = round(aggregate.engagement_rate, 9)
            value = codecs.encode(aggregate)
        return record_kind.encode() + b"|" + value
    error = codecs.header_value(headers, codecs.DLQ_HEADER_ERROR) or ""
    try:
        letter = events_pb2.DeadLetter.FromString(value)
    except DecodeError:
        return error.encode() + b"|" + value
    if letter.error.startswith(PARSE_ERROR):
        letter.error = error = PARSE_ERROR
    return error.encode() + b"|" + codecs.encode(letter)


def test_java_engine_writes_what_the_python_operator_writes(
    kafka: KafkaBroker,
    settings_for_kafka: Settings,
    new_topic: TopicFactory,
    consume: CommittedReader,
    jars: JarLocations,
) -> None:
    python = run_join(kafka, settings_for_kafka, new_topic, consume, None)
    java = run_join(kafka, settings_for_kafka, new_topic, consume, jars.join_engine)
    assert sum(python["examples"].values()) > 300, "the workload labels hundreds of items"
    assert sum(python["dlq"].values()) > 20, "late, dangling and malformed records"
    assert python["metrics"], "aggregates were written"
    protobuf = f"|{codecs.PROTOBUF_CONTENT_TYPE}|".encode()
    assert all(protobuf in example for example in java["examples"])
    for kind in ("examples", "dlq", "metrics"):
        only_python = python[kind] - java[kind]
        only_java = java[kind] - python[kind]
        assert (only_python, only_java) == (Counter(), Counter()), (
            f"{kind}: {sum(only_python.values())} only from Python, "
            f"{sum(only_java.values())} only from Java; e.g. {list(only_python)[:2]} "
            f"against {list(only_java)[:2]}"
        )
