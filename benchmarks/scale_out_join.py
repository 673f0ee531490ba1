"""The join's drain rate at the parallelism the environment sets, for the scale-out benchmark.

    FEEDRANK_FLINK__PARALLELISM=1 .venv/bin/python -m benchmarks.scale_out_join --json
    FEEDRANK_FLINK__PARALLELISM=2 .venv/bin/python -m benchmarks.scale_out_join --smoke --json

``benchmarks.join_throughput`` pins the job's parallelism to its topics' partition
count (``join_throughput_jobs.job_settings``), so ``FEEDRANK_FLINK__PARALLELISM`` does
not reach it. This runs its throughput phase alone - the same workload, the same job
on the embedded mini-cluster, the same drain measurement (examples written / span of
their Kafka timestamps) - at ``flink.parallelism`` from the settings (environment),
without the relay, live-latency and state phases. One process per parallelism, so
each run starts its own JVM.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from benchmarks.join_throughput_jobs import engine_jar, join_config, running_join
from benchmarks.join_throughput_readers import backlog_example, drain_span
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
from benchmarks.progress import progress
from feedrank.core.settings import Settings, load_settings
from feedrank.streaming.example_wire import DecisionExamples
from feedrank.streaming.join_job import JoinTopics
from feedrank.streaming.join_logic import JoinConfig

say = progress("scale-out join")


def parallel_job_settings(bootstrap: str, state_dir: Path, interval_s: float) -> Settings:
    """``join_throughput_jobs.job_settings`` with ``flink.parallelism`` left to the
    environment (its default when unset)."""
    return load_settings(
        kafka={"bootstrap_servers": bootstrap},
        paths={"state_dir": state_dir},
        flink={"checkpoint_interval_s": interval_s},
    )


def example_bytes_mean(items: int) -> float:
    """Bytes of one shown item's labelled example, as the join writes it (spliced from a
    workload decision's bytes by ``example_wire``), averaged over the decision's items."""
    payload = decision_bytes("size", int(time.time() * 1000), items, random.Random(5))
    examples = DecisionExamples.from_decision_bytes(payload)
    sizes = [
        len(examples.example(post_id, label_time_ms=0, reward=0.0, breakdown={}))
        for post_id in examples.items
    ]
    return sum(sizes) / len(sizes)


def drain_rate(
    producer: Producer, topics: Topics, settings: Settings, sizes: Sizes, work: Path
) -> dict[str, Any]:
    """The join drains a backlog of ``sizes.decisions`` decisions: items/s and decisions/s
    (as ``join_throughput.measure_join`` takes them, with the same join configuration)."""
    decisions, rewards = topics.new("decisions"), topics.new("rewards")
    examples, dlq, metrics = topics.new("examples"), topics.new("dlq", 1), topics.new("metrics", 1)
    decision_bytes_total = produce_backlog(producer, [decisions], rewards, sizes)
    join = JoinConfig(
        reward_window_ms=2_000, max_skew_ms=1_000, dangling_wait_ms=2_000, tombstone_ms=1_000
    )
    bootstrap = settings.kafka.bootstrap
    topics_of_join = JoinTopics(decisions, rewards, examples, dlq, metrics)
    config = join_config(bootstrap, topics_of_join, join, engine_jar())  # the shipped engine
    say(f"parallelism {settings.flink.parallelism}: draining {sizes.decisions:,} decisions")
    started = time.monotonic()
    with running_join(settings, config, work / "join-checkpoints"):
        items = sizes.decisions * sizes.items
        span = drain_span(bootstrap, examples, backlog_example, items)
    return {
        "decision_bytes_mean": round(decision_bytes_total / sizes.decisions),
        "example_bytes_mean": round(example_bytes_mean(sizes.items)),
        "join_items_per_s": round(items / span),
        "join_decisions_per_s": round(sizes.decisions / span),
        "drain_span_s": round(span, 3),
        "job_wall_s": round(time.monotonic() - started, 1),
    }


def run(bootstrap: str | None, sizes: Sizes, interval_s: float) -> dict[str, Any]:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-scale-out-join-") as temporary:
        work = Path(temporary)
        with broker(bootstrap, work) as address:
            settings = parallel_job_settings(address, work / "state", interval_s)
            producer = Producer(
                {"bootstrap.servers": address, "enable.idempotence": True, "linger.ms": 5}
            )
            topics = Topics(AdminClient({"bootstrap.servers": address}))
            report: dict[str, Any] = {
                "parallelism": settings.flink.parallelism,
                "partitions": PARTITIONS,
                "decisions": sizes.decisions,
                "items_per_decision": sizes.items,
                "checkpoint_interval_s": interval_s,
            }
            report |= drain_rate(producer, topics, settings, sizes, work)
    report["wall_s"] = round(time.monotonic() - started, 1)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="join_throughput's smoke sizes")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    parser.add_argument("--bootstrap", help="use this broker instead of starting one")
    parser.add_argument("--checkpoint-interval-s", type=float, default=1.0)
    args = parser.parse_args()
    report = run(args.bootstrap, SMOKE if args.smoke else FULL, args.checkpoint_interval_s)
    print(json.dumps(report, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
