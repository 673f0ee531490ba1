"""Freshness: from an engagement event to a registry version that has learned from it.

    .venv/bin/python -m benchmarks.freshness                  # full run (about 4 minutes)
    .venv/bin/python -m benchmarks.freshness --smoke --json   # CI size (under 2 minutes)
    .venv/bin/python -m benchmarks.freshness --bootstrap 127.0.0.1:9092

The learning path of the local stack, as real processes on 127.0.0.1: a KRaft broker
(started in a temporary directory unless ``--bootstrap`` names one), ``feedrank join``
(the Flink mini-cluster join, transactional sinks committed on checkpoints) and
``feedrank learn`` (the online learner, publishing to a registry in the temporary
directory), both started as ``feedrank up`` starts them: child processes configured
through ``FEEDRANK_*`` variables. Topics are private to the run.

Traffic: live decisions at ``--rate`` per second, each showing ``--items`` posts of the
simulated world the learner also builds (same seed, size and start), with the
impression-time features explore logs; for ``--like-share`` of them a ``like`` of one
shown post, ``--like-delay-s`` after the decision, produced at a recorded time t0.
After a warm-up (until the learner has published a version learned from examples),
every like of the next ``--live-s`` seconds is measured:

* **reward -> example**: until its positive example is visible to a read-committed
  consumer of the examples topic, whose partition and offset are noted. The join's
  sink commits on checkpoints, so this is bounded below by the checkpoint interval
  (half of it on average).
* **example -> version**: until the first registry version whose manifest
  ``training.kafka_offsets`` for that partition passes the example's offset appears
  in the registry (polled every 50 ms): the learner's publish cadence plus the time
  to publish.
* **freshness** = reward produced -> version visible. Target: p50 <= 30 s.

Baselines from the same run: the join's reward -> example latency alone (what no
learner can beat), the ideal pipeline (no processing time: at most one checkpoint
interval plus one publish interval) and the cadence the learner actually kept (its
mean interval between versions, half of which an example waits on average).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from benchmarks.freshness_profile import FULL, SMOKE, Profile
from benchmarks.freshness_report import (
    add_baselines,
    describe_settings,
    print_text,
    settings_report,
    summarise,
)
from benchmarks.freshness_stack import Stack, stack_settings
from benchmarks.freshness_traffic import Traffic
from benchmarks.freshness_watchers import first_covering
from benchmarks.local_broker import broker
from benchmarks.progress import progress
from feedrank.core.kafka_topics import ensure_topics
from feedrank.core.settings import TopicSettings
from feedrank.stack.topics import standard_topics

say = progress("freshness")


def measure(stack: Stack, traffic: Traffic, profile: Profile) -> dict[str, Any]:
    """Warm up, sample the likes of ``live_s`` seconds, wait until versions cover them."""
    traffic.start()
    warm_from = time.monotonic()

    def warm() -> bool:
        learned = any(version.examples > 0 for version in stack.registry.snapshot())
        # The join's first positives: a job reported RUNNING can take tens of seconds
        # more to deploy its tasks on a busy box, and a live window measured before that
        # saw every like arrive at once, in one version.
        flowing = stack.examples.counts()[1] > 0
        return learned and flowing and time.monotonic() - warm_from >= profile.warmup_s

    stack.wait(warm, "version learned from examples and the join's positives (warm-up)", 240)
    say(f"warm after {time.monotonic() - warm_from:.0f}s; measuring for {profile.live_s:.0f}s")
    versions_before = len(stack.registry.snapshot())
    examples_before, _ = stack.examples.counts()
    traffic.measuring.set()
    live_from = time.monotonic()
    next_report = live_from + 10
    while time.monotonic() - live_from < profile.live_s:
        stack.check()
        if traffic.failure is not None:
            raise RuntimeError("the traffic thread failed") from traffic.failure
        if time.monotonic() >= next_report:
            examples, positives = stack.examples.counts()
            versions = stack.registry.snapshot()
            say(
                f"{time.monotonic() - live_from:4.0f}s: {traffic.decisions} decisions, "
                f"{len(traffic.sampled)} likes sampled, {examples} examples "
                f"({positives} positive), latest {versions[-1].version}"
            )
            next_report += 10
        time.sleep(0.2)
    traffic.measuring.clear()
    live_s = time.monotonic() - live_from
    examples_live = stack.examples.counts()[0] - examples_before
    sampled = dict(traffic.sampled)
    say(f"{len(sampled)} likes sampled; waiting for versions that cover them")

    def covered() -> bool:
        with stack.examples.lock:
            seen = [stack.examples.positives.get(key) for key in sampled]
        if any(example is None for example in seen):
            return False
        versions = stack.registry.snapshot()
        return all(first_covering(versions, e) is not None for e in seen if e is not None)

    drain_s = max(90.0, 4 * (profile.publish_every_s + profile.checkpoint_interval_s))
    try:
        stack.wait(covered, "version covering every sampled like", drain_s)
    except RuntimeError as error:
        say(str(error).splitlines()[0])  # reported as unreached below
    traffic.stop.set()
    traffic.join(timeout=60)
    versions = stack.registry.snapshot()
    with stack.examples.lock:
        seen_positives = dict(stack.examples.positives)
    return summarise(sampled, seen_positives, versions, versions_before, live_s, examples_live)


def run(bootstrap: str | None, profile: Profile) -> dict[str, Any]:
    if profile.like_delay_s >= profile.reward_window_s:
        raise ValueError("--like-delay-s must be shorter than the reward window")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-freshness-") as temporary:
        work = Path(temporary)
        with broker(bootstrap, work) as address:
            report = run_stack(address, work, profile, shared_broker=bootstrap is not None)
    report["wall_s"] = round(time.monotonic() - started, 1)
    report["load_average_1m"] = round(os.getloadavg()[0], 2)
    return report


def run_stack(address: str, work: Path, profile: Profile, *, shared_broker: bool) -> dict[str, Any]:
    """One run on the broker at ``address``; every client is gone when it returns."""
    tag = uuid.uuid4().hex[:8]
    names = {
        kind: f"bench.freshness.{kind}.{tag}"
        for kind in ("decisions", "rewards", "examples", "metrics", "dlq")
    }
    topics = TopicSettings.model_validate(names)
    admin = AdminClient({"bootstrap.servers": address})
    ensure_topics(admin, standard_topics(topics))
    settings = stack_settings(address, work, topics, profile, tag)
    say(describe_settings(settings, profile))
    producer = Producer({"bootstrap.servers": address, "enable.idempotence": True, "linger.ms": 5})
    traffic = Traffic(producer, settings, profile, tag)
    stack = Stack(settings, work / "logs")
    try:
        stack.start()
        report = measure(stack, traffic, profile)
    finally:
        traffic.stop.set()
        if traffic.is_alive():
            traffic.join(timeout=60)
        stack.close()
        if shared_broker:  # someone else's broker: leave no topics behind
            for future in admin.delete_topics(topics.names(), operation_timeout=30).values():
                future.result()
    add_baselines(report, profile)
    return settings_report(profile, settings) | report


OPTIONS = {  # profile field -> help (the full and smoke values are appended)
    "live_s": "seconds of measured likes",
    "rate": "decisions per second",
    "items": "shown posts per decision",
    "like_share": "share of decisions with a like",
    "like_delay_s": "seconds from a decision to its like (< the reward window)",
    "posts": "posts in the simulated world",
    "reward_window_s": "the join's reward window, seconds",
    "checkpoint_interval_s": "the join's checkpoint interval (its sink commits on them)",
    "publish_every_s": "the learner's publish cadence, seconds",
    "micro_batch": "the learner's micro-batch",
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Progress goes to stderr, the report to stdout.",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI (< 2 minutes)")
    parser.add_argument("--json", action="store_true", help="print one JSON report")
    parser.add_argument("--bootstrap", help="use this broker instead of starting one")
    for name, text in OPTIONS.items():
        kind = type(getattr(FULL, name))
        defaults = f"full {getattr(FULL, name):g}, smoke {getattr(SMOKE, name):g}"
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, help=f"{text} ({defaults})")
    args = parser.parse_args()
    profile = SMOKE if args.smoke else FULL
    overrides = {name: getattr(args, name) for name in OPTIONS if getattr(args, name) is not None}
    report = run(args.bootstrap, replace(profile, **overrides))
    if args.json:
        print(json.dumps(report))
    else:
        print_text(report)


if __name__ == "__main__":
    main()
