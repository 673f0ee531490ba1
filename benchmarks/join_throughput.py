"""Streaming join: throughput, reward-to-example latency and state size (issue 4).

    .venv/bin/python -m benchmarks.join_throughput               # full run (minutes)
    .venv/bin/python -m benchmarks.join_throughput --smoke --json
    .venv/bin/python -m benchmarks.join_throughput --bootstrap 127.0.0.1:9092
    .venv/bin/python -m benchmarks.join_throughput --throughput-only --decisions 24000

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
import dataclasses
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from benchmarks.join_throughput_jobs import (
    checkpoint_bytes,
    engine_jar,
    job_settings,
    join_config,
    running_join,
    running_relay,
    wait_consumed,
)
from benchmarks.join_throughput_readers import (
    backlog_decision,
    backlog_example,
    drain_span,
    live_decision,
    live_latencies,
    live_positive,
    percentile,
)
from benchmarks.join_throughput_workload import (
    FULL,
    PARTITIONS,
    SMOKE,
    Sizes,
    Topics,
    decision_bytes,
    produce_backlog,
)
from benchmarks.local_broker import broker
from feedrank.core.settings import Settings, load_settings
from feedrank.core.time_units import DAY_MS, SECOND_MS, WEEK_MS
from feedrank.streaming import join_job
from feedrank.streaming.join_job import JoinTopics
from feedrank.streaming.join_logic import JoinConfig

TWO_WEEKS_S = 2 * WEEK_MS // SECOND_MS
DAY_S = DAY_MS // SECOND_MS


def measure_join(
    producer: Producer,
    topics: Topics,
    settings: Settings,
    sizes: Sizes,
    work: Path,
    *,
    throughput_only: bool = False,
    segment_salt: str | None = None,
    engine_jar: Path | None = None,
) -> dict[str, Any]:
    decisions, rewards = topics.new("decisions"), topics.new("rewards")
    relay_in, relay_out = topics.new("relay-in"), topics.new("relay-out")
    examples, dlq, metrics = topics.new("examples"), topics.new("dlq", 1), topics.new("metrics", 1)
    decision_bytes_total = produce_backlog(producer, [decisions, relay_in], rewards, sizes)
    bootstrap = settings.kafka.bootstrap
    join = JoinConfig(
        reward_window_ms=2_000,
        max_skew_ms=1_000,
        dangling_wait_ms=2_000,
        tombstone_ms=1_000,
        segment_salt=segment_salt,
    )
    config = join_config(
        bootstrap, JoinTopics(decisions, rewards, examples, dlq, metrics), join, engine_jar
    )
    with running_join(settings, config, work / "join-checkpoints"):
        items = sizes.decisions * sizes.items
        join_span = drain_span(bootstrap, examples, backlog_example, items)
        if throughput_only:
            return {
                "decision_bytes_mean": round(decision_bytes_total / sizes.decisions),
                "join_items_per_s": round(items / join_span),
                "join_decisions_per_s": round(sizes.decisions / join_span),
            }
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
    producer: Producer,
    topics: Topics,
    settings: Settings,
    sizes: Sizes,
    work: Path,
    engine_jar: Path | None,
) -> dict[str, Any]:
    """Checkpoint bytes per pending decision with the production 14-day window."""
    decisions, rewards = topics.new("state-decisions"), topics.new("state-rewards")
    examples, dlq = topics.new("state-examples"), topics.new("state-dlq", 1)
    join = JoinConfig(reward_window_ms=2 * WEEK_MS)
    config = join_config(
        settings.kafka.bootstrap, JoinTopics(decisions, rewards, examples, dlq), join, engine_jar
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


def run(
    bootstrap: str | None,
    sizes: Sizes,
    interval_s: float,
    rate: float,
    *,
    throughput_only: bool = False,
    segment_salt: str | None = None,
    engine_jar: Path | None = None,
) -> dict[str, Any]:
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
            report |= measure_join(
                producer,
                topics,
                settings,
                sizes,
                work,
                throughput_only=throughput_only,
                segment_salt=segment_salt,
                engine_jar=engine_jar,
            )
            report["join_and_relay_phase_s"] = round(time.monotonic() - started, 1)
            if throughput_only:
                return report
            report |= measure_state(producer, topics, settings, sizes, work, engine_jar)
    pending_two_weeks = rate * TWO_WEEKS_S
    tombstoned_one_day = rate * DAY_S  # closed decisions kept for late-reward detection
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
    parser.add_argument(
        "--decisions", type=int, help="backlog decisions (default: 6,000; smoke: 100)"
    )
    parser.add_argument(
        "--throughput-only",
        action="store_true",
        help="drain the backlog and stop: no relay, latency or state phase (experiments)",
    )
    parser.add_argument(
        "--segments",
        action="store_true",
        help="the join also marks each user's position segment and the aggregates sum "
        "them per segment (the canary analysis's pre-period; on in the stack)",
    )
    parser.add_argument(
        "--engine",
        choices=("python", "java"),
        help="the join's keyed operator: Python (embedded) or the Java engine "
        "(streaming/feedrank/streaming/engine, built by `feedrank setup`); "
        "default: the shipped one (join.engine, java)",
    )
    args = parser.parse_args()
    if args.python_mode == "process":
        join_job.run_python_operators_in_threads = lambda stream_env: None
    sizes = SMOKE if args.smoke else FULL
    if args.decisions:
        sizes = dataclasses.replace(sizes, decisions=args.decisions)
    report = run(
        args.bootstrap,
        sizes,
        args.checkpoint_interval_s,
        args.feed_requests_per_s,
        throughput_only=args.throughput_only,
        segment_salt="feedrank-arms-1" if args.segments else None,
        engine_jar=engine_jar(args.engine),
    )
    report["engine"] = args.engine or load_settings().join.engine
    report["python_mode"] = args.python_mode
    report["segments"] = args.segments
    print(json.dumps(report, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
