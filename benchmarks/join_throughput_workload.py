"""The join benchmark's workload: its sizes, the events it produces and its private topics.

Decisions are encoded as explore logs them (user features, per-item post features), likes
as the rewards topic carries them; :func:`produce_backlog` writes the backlog the join
and the relay drain.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import dataclass

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from feedrank.core import codecs
from feedrank.core.compact_features import ITEM_LAYOUTS, POST_VALUES_LAYOUT, logged_user_features
from feedrank.core.feature_schema import NUM_TOPICS, UserFeatures
from feedrank.core.kafka_topics import TopicSpec, ensure_topics
from feedrank.core.time_units import DAY_MS, HOUR_MS
from feedrank.v1 import events_pb2

PARTITIONS = 2
T0 = int(time.time() * 1000) - 2 * HOUR_MS  # backlog event time: two hours ago


@dataclass(frozen=True)
class Sizes:
    """How much the run produces: backlog, live traffic and pending decisions."""

    decisions: int
    items: int
    live_rate: int
    live_s: float
    pending: int


FULL = Sizes(decisions=6_000, items=30, live_rate=100, live_s=15.0, pending=5_000)
SMOKE = Sizes(decisions=100, items=10, live_rate=20, live_s=2.0, pending=50)


# The layout of a compact decision's per-item values (named once per decision): the
# impression-time dynamic post features; the static ones are referenced by catalogue
# version, and age_hours is recomputed from the version's created_ms.
LOGGED_POST_VALUES = ITEM_LAYOUTS[POST_VALUES_LAYOUT].values


def decision_bytes(decision_id: str, event_time_ms: int, items: int, rng: random.Random) -> bytes:
    """A decision as explore logs it: the user's impression-time features, typed (a few
    numbers, six topic affinities, language and country), and per shown item its
    catalogue version, dynamic values and country code (a compact decision, events.proto)."""
    affinity = [0.0] * NUM_TOPICS
    for topic in rng.sample(range(NUM_TOPICS), 6):
        affinity[topic] = rng.random()
    user = UserFeatures(
        user_id=f"u{decision_id}",
        language=0,
        country=0,
        age_bucket=rng.randrange(6),
        activity=rng.random(),
        follow_count=rng.random(),
        engagements_7d=rng.random(),
        sensitive_filter=False,
        known=True,
        as_of_ms=event_time_ms,
        topic_affinity=tuple(affinity),
        affinity_engagements=rng.random(),
    )
    return codecs.encode(
        events_pb2.Decision(
            decision_id=decision_id,
            event_time_ms=event_time_ms,
            user_id=f"u{decision_id}",
            model_version="bench",
            arm="stable",
            user_features=logged_user_features(user, event_time_ms),
            item_feature_names=[POST_VALUES_LAYOUT],
            items=[
                events_pb2.ShownItem(
                    # Posts of a million-post catalogue, each decision its own, after
                    # "p0" (the post the benchmark's likes are for).
                    post_id=f"p{rng.randrange(1, 1_000_000)}" if i else "p0",
                    position=i,
                    score=rng.random(),
                    propensity=1.0 / (i + 1),
                    catalogue_version=event_time_ms - rng.randrange(10**9),
                    features=events_pb2.FeatureVector(
                        values=[rng.random() for _ in LOGGED_POST_VALUES],
                        country_code=rng.randrange(11),
                    ),
                )
                for i in range(items)
            ],
        )
    )


def like_bytes(decision_id: str, ts_ms: int) -> bytes:
    document = {
        "decision_id": decision_id,
        "post_id": "p0",
        "user_id": f"u{decision_id}",
        "type": "like",
        "ts_ms": ts_ms,
    }
    return json.dumps(document).encode()


@dataclass
class Topics:
    """Per-run topics (uuid-suffixed), created on the benchmark's broker."""

    admin: AdminClient
    tag: str = uuid.uuid4().hex[:8]

    def new(self, hint: str, partitions: int = PARTITIONS) -> str:
        name = f"bench.join.{hint}.{self.tag}"
        ensure_topics(self.admin, [TopicSpec(name, partitions, 1, DAY_MS)])
        return name


def produce_backlog(
    producer: Producer, decisions: list[str], rewards: str, sizes: Sizes, seed: int = 7
) -> int:
    """The backlog (1 ms of event time apart, a like for a quarter), then a far "clock"
    decision and reward per partition so that every backlog window closes. Returns the
    decision bytes produced per topic."""
    rng = random.Random(seed)
    total = 0
    for index in range(sizes.decisions):
        decision_id = f"b{index}"
        payload = decision_bytes(decision_id, T0 + index, sizes.items, rng)
        total += len(payload)
        for topic in decisions:
            producer.produce(topic, payload, key=decision_id.encode())
        if index % 4 == 0:
            producer.produce(rewards, like_bytes(decision_id, T0 + index + 1), key=b"b")
        producer.poll(0)
    for partition in range(PARTITIONS):
        clock = decision_bytes(f"clock{partition}", T0 + HOUR_MS, 1, rng)
        for topic in decisions:
            producer.produce(topic, clock, partition=partition)
        producer.produce(rewards, like_bytes("none", T0 + HOUR_MS), partition=partition)
    assert producer.flush(60) == 0, "the backlog was not acknowledged"
    return total
