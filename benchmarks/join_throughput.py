"""Streaming join: throughput, reward-to-example latency and state size (issue 4).

    .venv/bin/python -m benchmarks.join_throughput               # full run (minutes)
    .venv/bin/python -m benchmarks.join_throughput --smoke --json
    .venv/bin/python -m benchmarks.join_throughput --bootstrap 127.0.0.1:9092

Kafka -> Flink -> Kafka on the embedded mini-cluster, exactly as ``feedrank join``
runs it: read-committed sources, transactional sinks, checkpoints every
``--checkpoint-interval-s``. Without ``--bootstrap`` a broker is started in a
temporary directory. Every figure comes with a baseline measured in the same run:

* **throughput** - a backlog of ``--decisions`` decisions (``--items`` shown items
  each, with impression-time features) and their rewards is produced first; the join
  drains it. Shown items/s = examples written / span of their Kafka timestamps (the
  sink's send times), so job start-up is not counted. Baseline: the SQL relay
  (``streaming/relay.py``) moving the same decision bytes Kafka -> Kafka exactly once,
  counted as items/s (decisions/s x items per decision).
* **latency** - then live decisions and a like for each, at ``--live-rate`` per
  second: wall clock from producing the reward to its positive example being visible
  to a read-committed consumer. The transactional sink commits on checkpoints, so
  this is at least the checkpoint interval. Baseline: produce -> visible through the
  relay, same interval.
* **state** - a join with the production 14-day window: checkpoint size with no
  decision pending, then with ``--pending`` decisions pending; the difference per
  pending decision, against the decision's own protobuf size, extrapolated to two
  weeks at ``--feed-requests-per-s``.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from benchmarks.local_broker import broker
from feedrank.core import codecs
from feedrank.core.kafka_topics import TopicSpec, ensure_topics
from feedrank.core.settings import Settings, load_settings
from feedrank.core.time_units import DAY_MS
from feedrank.streaming import join_job
from feedrank.streaming.flink_environment import (
    FlinkJobOptions,
    create_stream_environment,
    create_table_environment,
)
from feedrank.streaming.join_job import JoinJobConfig, JoinTopics, build_join_job
from feedrank.streaming.join_logic import JoinConfig
from feedrank.streaming.kafka_tables import KafkaSink, KafkaSource
from feedrank.streaming.recovery import completed_checkpoints
from feedrank.streaming.relay import relay
from feedrank.v1 import events_pb2

PARTITIONS = 2
TWO_WEEKS_S = 14 * 86_400
T0 = int(time.time() * 1000) - 7_200_000  # backlog event time: two hours ago


@dataclass(frozen=True)
class Sizes:
    decisions: int
    items: int
    live_rate: int
    live_s: float
    pending: int


FULL = Sizes(decisions=6_000, items=30, live_rate=100, live_s=15.0, pending=5_000)
SMOKE = Sizes(decisions=100, items=10, live_rate=20, live_s=2.0, pending=50)


# -- events -----------------------------------------------------------------------------


def decision_bytes(decision_id: str, event_time_ms: int, items: int, rng: random.Random) -> bytes:
    """A decision as explore logs it: user features and per-item post features."""

    def features(numeric: int, dim: int) -> events_pb2.FeatureVector:
        return events_pb2.FeatureVector(
            numeric={f"f{i}": rng.random() for i in range(numeric)},
            categorical={"language": "en"},
            embedding=[rng.uniform(-1, 1) for _ in range(dim)],
        )

    return codecs.encode(
        events_pb2.Decision(
            decision_id=decision_id,
            event_time_ms=event_time_ms,
            user_id=f"u{decision_id}",
            model_version="bench",
            arm="stable",
            user_features=features(8, 64),
            items=[
                events_pb2.ShownItem(
                    post_id=f"p{i}",
                    position=i,
                    score=rng.random(),
                    propensity=1.0 / (i + 1),
                    features=features(4, 64),
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
        clock = decision_bytes(f"clock{partition}", T0 + 3_600_000, 1, rng)
        for topic in decisions:
            producer.produce(topic, clock, partition=partition)
        producer.produce(rewards, like_bytes("none", T0 + 3_600_000), partition=partition)
    assert producer.flush(60) == 0, "the backlog was not acknowledged"
    return total


# -- reading ----------------------------------------------------------------------------


def committed_consumer(bootstrap: str, topic: str, *, from_end: bool) -> Consumer:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    offset = OFFSET_END if from_end else 0
    consumer.assign([TopicPartition(topic, p, offset) for p in range(PARTITIONS)])
    return consumer


def drain_span(bootstrap: str, topic: str, wanted: Callable[[bytes], bool], count: int) -> float:
    """Seconds between the first and the last of ``count`` wanted records (by the
    record timestamps the sink set when it sent them); waits at most 10 minutes."""
    consumer = committed_consumer(bootstrap, topic, from_end=False)
    stamps: list[int] = []
    deadline = time.monotonic() + 600
    try:
        while len(stamps) < count and time.monotonic() < deadline:
            for record in consumer.consume(1000, timeout=0.5):
                assert record.error() is None, record.error()
                value = record.value()
                if value is not None and wanted(value):
                    stamps.append(record.timestamp()[1])
    finally:
        consumer.close()
    if len(stamps) < count:
        raise RuntimeError(f"only {len(stamps)} of {count} records on {topic} in 10 minutes")
    return max(1, max(stamps) - min(stamps)) / 1000


def backlog_example(value: bytes) -> bool:
    return codecs.decode(events_pb2.LabelledExample, value).decision_id.startswith("b")


def backlog_decision(value: bytes) -> bool:
    return codecs.decode(events_pb2.Decision, value).decision_id.startswith("b")


def live_latencies(
    producer: Producer,
    bootstrap: str,
    produce_to: tuple[str, str | None],
    read_from: str,
    decision_of: Callable[[bytes], str | None],
    sizes: Sizes,
) -> list[float]:
    """Seconds from producing each live decision's reward (or, without a rewards
    topic, the decision itself) to its record being visible read-committed."""
    decisions_topic, rewards_topic = produce_to
    consumer = committed_consumer(bootstrap, read_from, from_end=True)
    consumer.consume(1, timeout=1.0)  # resolve the end offsets before producing
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            for record in consumer.consume(500, timeout=0.2):
                value = record.value()
                decision_id = None if value is None else decision_of(value)
                if decision_id is not None and decision_id not in seen:
                    seen[decision_id] = time.monotonic()

    reader = threading.Thread(target=read, name="latency-reader")
    reader.start()
    rng = random.Random(11)
    interval = 1.0 / sizes.live_rate
    count = int(sizes.live_rate * sizes.live_s)
    started = time.monotonic()
    for index in range(count):
        time.sleep(max(0.0, started + index * interval - time.monotonic()))
        decision_id = f"l{index}"
        now_ms = int(time.time() * 1000)
        producer.produce(decisions_topic, decision_bytes(decision_id, now_ms, sizes.items, rng))
        if rewards_topic is not None:
            producer.produce(rewards_topic, like_bytes(decision_id, now_ms + 1))
        producer.poll(0)
        sent[decision_id] = time.monotonic()
    producer.flush(30)
    deadline = time.monotonic() + 60
    while len(seen) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    stop.set()
    reader.join()
    consumer.close()
    return sorted(seen[key] - sent[key] for key in seen if key in sent)


def live_positive(value: bytes) -> str | None:
    example = codecs.decode(events_pb2.LabelledExample, value)
    return example.decision_id if example.engaged and example.decision_id[0] == "l" else None


def live_decision(value: bytes) -> str | None:
    decision_id = codecs.decode(events_pb2.Decision, value).decision_id
    return decision_id if decision_id.startswith("l") else None


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


# -- jobs -------------------------------------------------------------------------------


def job_settings(bootstrap: str, state_dir: Path, interval_s: float) -> Settings:
    return load_settings(
        kafka={"bootstrap_servers": bootstrap},
        paths={"state_dir": state_dir},
        flink={"parallelism": PARTITIONS, "checkpoint_interval_s": interval_s},
    )


def checkpoint_options(directory: Path) -> dict[str, str]:
    return {
        "execution.checkpointing.dir": directory.resolve().as_uri(),
        "execution.checkpointing.externalized-checkpoint-retention": "DELETE_ON_CANCELLATION",
    }


@contextmanager
def running_join(settings: Settings, config: JoinJobConfig, checkpoints: Path) -> Iterator[str]:
    """The join submitted to a mini-cluster; yields its job id, cancelled on exit."""
    stream_env, table_env = create_stream_environment(
        settings, FlinkJobOptions.from_settings(settings), extra=checkpoint_options(checkpoints)
    )
    build_join_job(stream_env, table_env, config)
    client = stream_env.execute_async("bench-join")
    try:
        yield str(client.get_job_id())
    finally:
        client.cancel().result()


@contextmanager
def running_relay(settings: Settings, source: str, sink: str) -> Iterator[None]:
    table_env = create_table_environment(settings, FlinkJobOptions.from_settings(settings))
    bootstrap = settings.kafka.bootstrap
    result = relay(
        table_env,
        KafkaSource(source, bootstrap, f"bench-relay-{uuid.uuid4().hex[:6]}"),
        KafkaSink(sink, bootstrap, transactional_id_prefix=f"bench-relay-{uuid.uuid4().hex}"),
    )
    try:
        yield
    finally:
        client = result.get_job_client()
        if client is not None:
            client.cancel().result()


def join_config(bootstrap: str, topics: JoinTopics, join: JoinConfig) -> JoinJobConfig:
    return JoinJobConfig(
        bootstrap=bootstrap,
        topics=topics,
        join=join,
        group_id=f"bench-join-{uuid.uuid4().hex[:6]}",
        transactional_id_prefix=f"bench-join-{uuid.uuid4().hex}",
        out_of_orderness_ms=200,
        idleness_ms=2_000,
    )


def checkpoint_bytes(job_dir: Path, after: float) -> tuple[int, int]:
    """(id, total bytes) of the job's newest complete checkpoint finished after ``after``
    (a ``time.time()``); waits up to two minutes for one."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = [m for m in completed_checkpoints(job_dir) if m.stat().st_mtime > after]
        if done:
            directory = done[-1].parent
            size = sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())
            return int(directory.name.removeprefix("chk-")), size
        time.sleep(0.2)
    raise RuntimeError(f"no checkpoint under {job_dir} in two minutes")


# -- the three measurements -------------------------------------------------------------


def measure_join(
    producer: Producer, topics: Topics, settings: Settings, sizes: Sizes, work: Path
) -> dict[str, Any]:
    decisions, rewards = topics.new("decisions"), topics.new("rewards")
    relay_in, relay_out = topics.new("relay-in"), topics.new("relay-out")
    examples, dlq, metrics = topics.new("examples"), topics.new("dlq", 1), topics.new("metrics", 1)
    decision_bytes_total = produce_backlog(producer, [decisions, relay_in], rewards, sizes)
    bootstrap = settings.kafka.bootstrap
    join = JoinConfig(
        reward_window_ms=2_000, max_skew_ms=1_000, dangling_wait_ms=2_000, tombstone_ms=1_000
    )
    config = join_config(bootstrap, JoinTopics(decisions, rewards, examples, dlq, metrics), join)
    with running_join(settings, config, work / "join-checkpoints"):
        items = sizes.decisions * sizes.items
        join_span = drain_span(bootstrap, examples, backlog_example, items)
        join_latency = live_latencies(
            producer, bootstrap, (decisions, rewards), examples, live_positive, sizes
        )
    with running_relay(settings, relay_in, relay_out):
        relay_span = drain_span(bootstrap, relay_out, backlog_decision, sizes.decisions)
        relay_latency = live_latencies(
            producer, bootstrap, (relay_in, None), relay_out, live_decision, sizes
        )
    join_items_per_s = items / join_span
    relay_items_per_s = sizes.decisions * sizes.items / relay_span
    return {
        "decision_bytes_mean": round(decision_bytes_total / sizes.decisions),
        "join_items_per_s": round(join_items_per_s),
        "relay_items_per_s": round(relay_items_per_s),
        "throughput_ratio_vs_relay": round(join_items_per_s / relay_items_per_s, 3),
        "join_decisions_per_s": round(sizes.decisions / join_span),
        "positives_measured": len(join_latency),
        "join_latency_p50_s": round(percentile(join_latency, 0.5), 3),
        "join_latency_p95_s": round(percentile(join_latency, 0.95), 3),
        "relay_latency_p50_s": round(percentile(relay_latency, 0.5), 3),
        "latency_ratio_vs_relay": round(
            percentile(join_latency, 0.5) / percentile(relay_latency, 0.5), 3
        ),
    }


def measure_state(
    producer: Producer, topics: Topics, settings: Settings, sizes: Sizes, work: Path
) -> dict[str, Any]:
    """Checkpoint bytes per pending decision with the production 14-day window."""
    decisions, rewards = topics.new("state-decisions"), topics.new("state-rewards")
    examples, dlq = topics.new("state-examples"), topics.new("state-dlq", 1)
    join = JoinConfig(reward_window_ms=TWO_WEEKS_S * 1000)
    config = join_config(
        settings.kafka.bootstrap, JoinTopics(decisions, rewards, examples, dlq), join
    )
    checkpoints = work / "state-checkpoints"
    rng = random.Random(13)
    with running_join(settings, config, checkpoints) as job_id:
        _, empty = checkpoint_bytes(checkpoints / job_id, after=0.0)
        now_ms = int(time.time() * 1000)
        payload_bytes = 0
        for index in range(sizes.pending):
            payload = decision_bytes(f"s{index}", now_ms + index, sizes.items, rng)
            payload_bytes += len(payload)
            producer.produce(decisions, payload, key=f"s{index}".encode())
            producer.poll(0)
        assert producer.flush(60) == 0
        consumed = wait_consumed(
            settings.kafka.bootstrap, f"{config.group_id}-decisions", decisions, sizes.pending + 0
        )
        _, full = checkpoint_bytes(checkpoints / job_id, after=consumed)
    per_pending = (full - empty) / sizes.pending
    per_decision = payload_bytes / sizes.pending
    return {
        "empty_checkpoint_bytes": empty,
        "pending_decisions": sizes.pending,
        "pending_checkpoint_bytes": full,
        "state_bytes_per_pending_decision": round(per_pending),
        "decision_protobuf_bytes": round(per_decision),
        "state_ratio_vs_decision_bytes": round(per_pending / per_decision, 3),
    }


def wait_consumed(bootstrap: str, group: str, topic: str, count: int) -> float:
    """``time.time()`` once the join's committed offsets (committed on checkpoints)
    cover ``count`` records of ``topic``; at most two minutes."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            offsets = consumer.committed(partitions, timeout=10)
            if sum(max(0, tp.offset) for tp in offsets) >= count:
                return time.time()
            time.sleep(0.5)
    finally:
        consumer.close()
    raise RuntimeError(f"the join did not consume {count} decisions of {topic} in two minutes")


# -- running ----------------------------------------------------------------------------


def run(bootstrap: str | None, sizes: Sizes, interval_s: float, rate: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-join-") as temporary:
        work = Path(temporary)
        with broker(bootstrap, work) as address:
            settings = job_settings(address, work / "state", interval_s)
            producer = Producer(
                {"bootstrap.servers": address, "enable.idempotence": True, "linger.ms": 5}
            )
            topics = Topics(AdminClient({"bootstrap.servers": address}))
            started = time.monotonic()
            report: dict[str, Any] = {
                "decisions": sizes.decisions,
                "items_per_decision": sizes.items,
                "checkpoint_interval_s": interval_s,
                "parallelism": PARTITIONS,
            }
            report |= measure_join(producer, topics, settings, sizes, work)
            report["join_and_relay_phase_s"] = round(time.monotonic() - started, 1)
            report |= measure_state(producer, topics, settings, sizes, work)
    pending_two_weeks = rate * TWO_WEEKS_S
    tombstoned_one_day = rate * 86_400  # closed decisions kept for late-reward detection
    per_decision = report["state_bytes_per_pending_decision"]
    report["feed_requests_per_s"] = rate
    report["two_week_state_tb"] = round(
        per_decision * (pending_two_weeks + tombstoned_one_day) / 1e12, 1
    )
    report["wall_s"] = round(time.monotonic() - started, 1)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CI)")
    parser.add_argument("--json", action="store_true", help="print one JSON report")
    parser.add_argument("--bootstrap", help="use this broker instead of starting one")
    parser.add_argument("--checkpoint-interval-s", type=float, default=1.0)
    parser.add_argument("--feed-requests-per-s", type=float, default=10_000.0)
    parser.add_argument(
        "--python-mode",
        choices=("thread", "process"),
        default="thread",
        help="the join's Python operators: embedded as shipped, or PyFlink's Beam workers "
        "(the mode that loses timers on restore, issue 4; for comparison only)",
    )
    args = parser.parse_args()
    if args.python_mode == "process":
        join_job.run_python_operators_in_threads = lambda stream_env: None
    sizes = SMOKE if args.smoke else FULL
    report = run(args.bootstrap, sizes, args.checkpoint_interval_s, args.feed_requests_per_s)
    report["python_mode"] = args.python_mode
    print(json.dumps(report, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
