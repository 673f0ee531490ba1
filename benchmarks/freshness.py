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
import itertools
import json
import math
import os
import random
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.local_broker import broker, free_port
from feedrank.core import codecs
from feedrank.core.kafka_topics import ensure_topics
from feedrank.core.settings import (
    LearnerSettings,
    Settings,
    TopicSettings,
    load_settings,
    settings_to_environment,
)
from feedrank.learners.online.feedback import slate_decision
from feedrank.registry import LocalModelRegistry, RegistryError
from feedrank.registry.manifest import VERSION_PATTERN
from feedrank.simulate.history import ExampleSimulator, SimulationConfig
from feedrank.simulate.world_views import local_world
from feedrank.stack.process import ManagedProcess
from feedrank.stack.topics import standard_topics
from feedrank.v1 import events_pb2

TARGET_P50_S = 30.0
REGISTRY_POLL_S = 0.05


@dataclass(frozen=True)
class Profile:
    """Traffic, world and the settings that decide freshness."""

    live_s: float  # seconds of measured likes
    rate: float  # decisions per second
    items: int  # shown posts per decision
    like_share: float  # share of decisions with a like
    like_delay_s: float  # like after its decision (< the reward window)
    warmup_s: float  # at least this long before measuring
    posts: int
    users: int
    creators: int
    reward_window_s: float
    checkpoint_interval_s: float  # the join's (its sink commits on checkpoints)
    publish_every_s: float  # the learner's publish cadence
    micro_batch: int  # the learner's micro-batch
    user_id_buckets: int | None = None  # None: the learner's defaults
    post_id_buckets: int | None = None


FULL = Profile(
    live_s=120.0,
    rate=10.0,
    items=10,
    like_share=0.5,
    like_delay_s=1.0,
    warmup_s=10.0,
    posts=50_000,
    users=10_000,
    creators=2_000,
    reward_window_s=10.0,
    checkpoint_interval_s=1.0,
    publish_every_s=10.0,
    micro_batch=LearnerSettings().micro_batch_size,
)
SMOKE = replace(
    FULL,
    live_s=12.0,
    rate=5.0,
    items=5,
    like_share=1.0,
    like_delay_s=0.5,
    warmup_s=0.0,
    posts=2_000,
    users=500,
    creators=100,
    reward_window_s=5.0,
    publish_every_s=3.0,
    user_id_buckets=4_096,
    post_id_buckets=8_192,
)


def say(message: str) -> None:
    print(f"[freshness {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the stack --------------------------------------------------------------------------


def stack_settings(
    bootstrap: str, work: Path, topics: TopicSettings, profile: Profile, tag: str
) -> Settings:
    learner: dict[str, Any] = {
        "group_id": f"bench-freshness-{tag}",
        "state_dir": work / "learner",
        "micro_batch_size": profile.micro_batch,
        "publish_every_s": profile.publish_every_s,
    }
    if profile.user_id_buckets is not None:
        learner["user_id_buckets"] = profile.user_id_buckets
    if profile.post_id_buckets is not None:
        learner["post_id_buckets"] = profile.post_id_buckets
    return load_settings(
        kafka={"bootstrap_servers": bootstrap},
        topics=topics.model_dump(),
        paths={"state_dir": work / "state", "registry_dir": work / "registry"},
        flink={"checkpoint_interval_s": profile.checkpoint_interval_s},
        time={"reward_window": profile.reward_window_s},
        world={
            "num_users": profile.users,
            "num_creators": profile.creators,
            "num_posts": profile.posts,
            # Pinned, so the learner and the traffic here build the same posts.
            "start_ms": int(time.time() * 1000),
        },
        ports={"streaming_metrics": free_port(), "learner_metrics": free_port()},
        learner=learner,
    )


def launch(name: str, arguments: list[str], settings: Settings, logs: Path) -> ManagedProcess:
    """``feedrank <arguments>`` with the run's settings in its environment."""
    tag = f"feedrank.component=bench-freshness-{name}"
    command = [sys.executable, "-X", tag, "-m", "feedrank.cli.main", *arguments]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FEEDRANK_")}
    environment.update(settings_to_environment(settings))
    return ManagedProcess.launch(
        command,
        log_file=logs / f"{name}.log",
        tie_to_parent=True,
        tag=tag,
        environment=environment,
    )


def log_tail(path: Path, characters: int = 3000) -> str:
    return path.read_text(errors="replace")[-characters:] if path.exists() else "(no log)"


def join_running(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return False
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "feedrank_join_job_running":
                return sample.value == 1.0
    return False


# -- watching the examples topic and the registry ---------------------------------------


@dataclass(frozen=True)
class SeenExample:
    partition: int
    offset: int
    seen_s: float  # time.monotonic() when it became visible read-committed


class ExampleWatcher(threading.Thread):
    """Reads the examples topic read-committed from the start; notes every positive."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        super().__init__(name="example-watcher", daemon=True)
        self.positives: dict[tuple[str, str], SeenExample] = {}
        self.examples = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-freshness-{uuid.uuid4().hex}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        self.consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)]
        )

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                for record in self.consumer.consume(500, timeout=0.05):
                    now, value = time.monotonic(), record.value()
                    if record.error() is not None or value is None:
                        continue
                    example = codecs.decode(events_pb2.LabelledExample, value)
                    with self.lock:
                        self.examples += 1
                        if example.engaged:
                            seen = SeenExample(record.partition() or 0, record.offset() or 0, now)
                            key = example.decision_id, example.post_id
                            self.positives.setdefault(key, seen)  # the first one counts
        finally:
            self.consumer.close()

    def counts(self) -> tuple[int, int]:
        with self.lock:
            return self.examples, len(self.positives)


@dataclass(frozen=True)
class SeenVersion:
    version: str
    seen_s: float  # time.monotonic() when it appeared in the registry
    examples: int  # examples the learner had applied
    offsets: dict[int, int]  # examples partition -> next offset it covers


class RegistryWatcher(threading.Thread):
    """Polls the registry directory; notes when each version appears and what it covers."""

    def __init__(self, root: Path, topic: str) -> None:
        super().__init__(name="registry-watcher", daemon=True)
        self.registry = LocalModelRegistry(root)
        self.directory = root / "versions"
        self.topic = topic
        self.versions: list[SeenVersion] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def run(self) -> None:
        known: set[str] = set()
        while not self.stop.is_set():
            now = time.monotonic()
            names = os.listdir(self.directory) if self.directory.is_dir() else []
            fresh = sorted(
                (n for n in names if VERSION_PATTERN.match(n) and n not in known),
                key=lambda name: int(name[1:]),
            )
            for name in fresh:
                try:
                    manifest = self.registry.manifest(name)
                except RegistryError:
                    continue  # not whole yet: the next poll
                known.add(name)
                offsets = {
                    int(key.rsplit(":", 1)[1]): offset
                    for key, offset in manifest.training.kafka_offsets.items()
                    if key.rsplit(":", 1)[0] == self.topic
                }
                seen = SeenVersion(name, now, manifest.training.examples, offsets)
                with self.lock:
                    self.versions.append(seen)
            time.sleep(REGISTRY_POLL_S)

    def snapshot(self) -> list[SeenVersion]:
        with self.lock:
            return list(self.versions)


def first_covering(versions: list[SeenVersion], example: SeenExample) -> SeenVersion | None:
    """The first version (in order of appearance) that has learned from ``example``."""
    for version in versions:
        if version.offsets.get(example.partition, 0) > example.offset:
            return version
    return None


# -- traffic ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PendingLike:
    due_s: float  # time.monotonic() to produce it at
    decision_id: str
    user_id: str
    post_id: str


class Traffic(threading.Thread):
    """Live decisions with impression-time features, and likes of shown posts.

    Likes produced while ``measuring`` is set are the sampled engagements: their key
    (decision id, post id) -> t0, the ``time.monotonic()`` of their produce call.
    """

    def __init__(self, producer: Producer, settings: Settings, profile: Profile, tag: str) -> None:
        super().__init__(name="traffic", daemon=True)
        self.producer, self.profile, self.tag = producer, profile, tag
        self.decisions_topic = settings.topics.decisions
        self.rewards_topic = settings.topics.rewards
        world = local_world(settings, settings.world.start_ms)
        config = SimulationConfig(slate_size=profile.items, pool_size=max(100, profile.items))
        self.simulator = ExampleSimulator(world, config, start_ms=settings.world.start_ms)
        self.users = world.num_users
        self.rng = random.Random(17)
        self.measuring = threading.Event()
        self.stop = threading.Event()
        self.sampled: dict[tuple[str, str], float] = {}
        self.decisions = 0
        self.likes = 0
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            self.failure = error

    def _run(self) -> None:
        interval = 1.0 / self.profile.rate
        next_decision = time.monotonic()
        pending: deque[PendingLike] = deque()
        while not self.stop.is_set():
            now = time.monotonic()
            while pending and pending[0].due_s <= now:
                self._like(pending.popleft())
            if now >= next_decision:
                like = self._decision()
                if like is not None:
                    pending.append(like)
                next_decision += interval
            self.producer.poll(0)
            wake = min(next_decision, pending[0].due_s) if pending else next_decision
            time.sleep(min(0.05, max(0.0, wake - time.monotonic())))
        self.producer.flush(30)

    def _decision(self) -> PendingLike | None:
        now_ms = int(time.time() * 1000)
        self.simulator.now_ms = now_ms
        slate: list[events_pb2.LabelledExample] = []
        while not slate:  # a user with no eligible post gets no feed: ask another
            slate = self.simulator.decide(self.rng.randrange(self.users))
        decision_id = f"{self.tag}-{self.decisions}"
        self.decisions += 1
        first = slate[0]
        decision = slate_decision(slate)
        decision.decision_id, decision.event_time_ms = decision_id, now_ms
        decision.model_version, decision.arm = "bench", "stable"
        decision.context["surface"] = "home"
        key = first.user_id.encode()
        self.producer.produce(self.decisions_topic, codecs.encode(decision), key=key)
        if self.rng.random() >= self.profile.like_share:
            return None
        liked = self.rng.choice(slate).post_id
        due = time.monotonic() + self.profile.like_delay_s
        return PendingLike(due, decision_id, first.user_id, liked)

    def _like(self, like: PendingLike) -> None:
        document = {
            "decision_id": like.decision_id,
            "post_id": like.post_id,
            "user_id": like.user_id,
            "type": "like",
            "ts_ms": int(time.time() * 1000),
        }
        t0 = time.monotonic()
        self.producer.produce(
            self.rewards_topic, json.dumps(document).encode(), key=like.user_id.encode()
        )
        self.likes += 1
        if self.measuring.is_set():
            self.sampled[like.decision_id, like.post_id] = t0


# -- the run ----------------------------------------------------------------------------


def percentiles(values: list[float], prefix: str) -> dict[str, float]:
    """p50, p95, min and max of ``values`` (NaN when there are none)."""
    array = np.asarray(values, dtype=np.float64)
    figures = {"p50": 50.0, "p95": 95.0, "min": 0.0, "max": 100.0}
    return {
        f"{prefix}_{name}_s": round(float(np.percentile(array, q)), 3) if len(array) else math.nan
        for name, q in figures.items()
    }


class Stack:
    """The join and the learner as child processes, and the watchers over their output."""

    def __init__(self, settings: Settings, logs: Path) -> None:
        self.settings, self.logs = settings, logs
        self.processes: dict[str, ManagedProcess] = {}
        topics = settings.topics
        self.examples = ExampleWatcher(settings.kafka.bootstrap, topics.examples, topics.partitions)
        self.registry = RegistryWatcher(settings.paths.registry, topics.examples)

    def start(self) -> None:
        say("starting feedrank join and feedrank learn")
        self.processes["join"] = launch("join", ["join", "--fresh"], self.settings, self.logs)
        self.processes["learner"] = launch("learner", ["learn"], self.settings, self.logs)
        self.registry.start()
        self.examples.start()
        started = time.monotonic()
        self.wait(lambda: bool(self.registry.snapshot()), "the learner's first version", 180)
        say(f"learner ready (initial version published) after {time.monotonic() - started:.0f}s")
        port = self.settings.ports.streaming_metrics
        self.wait(lambda: join_running(port), "the join job RUNNING", 240)
        say(f"join RUNNING after {time.monotonic() - started:.0f}s")

    def check(self) -> None:
        for name, process in self.processes.items():
            if not process.is_running():
                raise RuntimeError(
                    f"feedrank {name} exited:\n{log_tail(self.logs / f'{name}.log')}"
                )

    def wait(self, condition: Callable[[], bool], what: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check()
            if condition():
                return
            time.sleep(0.1)
        tails = "\n".join(
            f"--- {name}:\n{log_tail(self.logs / f'{name}.log', 1500)}" for name in self.processes
        )
        raise RuntimeError(f"no {what} within {timeout_s:.0f}s\n{tails}")

    def close(self) -> None:
        for name in ("learner", "join"):  # the learner first: it still reads the join
            process = self.processes.get(name)
            if process is not None:
                process.stop(grace_s=30)
        self.examples.stop.set()
        self.registry.stop.set()
        for thread in (self.examples, self.registry):
            if thread.is_alive():
                thread.join(timeout=10)


def measure(stack: Stack, traffic: Traffic, profile: Profile) -> dict[str, Any]:
    """Warm up, sample the likes of ``live_s`` seconds, wait until versions cover them."""
    traffic.start()
    warm_from = time.monotonic()

    def warm() -> bool:
        learned = any(version.examples > 0 for version in stack.registry.snapshot())
        return learned and time.monotonic() - warm_from >= profile.warmup_s

    stack.wait(warm, "version learned from examples (warm-up)", 240)
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


def summarise(
    sampled: dict[tuple[str, str], float],
    positives: dict[tuple[str, str], SeenExample],
    versions: list[SeenVersion],
    versions_before: int,
    live_s: float,
    examples_live: int,
) -> dict[str, Any]:
    join: list[float] = []
    learner: list[float] = []
    fresh: list[float] = []
    no_example = unreached = 0
    used: set[str] = set()
    for key, t0 in sampled.items():
        example = positives.get(key)
        if example is None:
            no_example += 1
            continue
        version = first_covering(versions, example)
        if version is None:
            unreached += 1
            continue
        used.add(version.version)
        join.append(example.seen_s - t0)
        learner.append(version.seen_s - example.seen_s)
        fresh.append(version.seen_s - t0)
    # The cadence the learner kept: intervals between the versions published from the
    # start of the measurement to the last one an engagement needed.
    last = max((i for i, v in enumerate(versions) if v.version in used), default=-1)
    window = versions[max(0, versions_before - 1) : last + 1]
    gaps = [later.seen_s - earlier.seen_s for earlier, later in itertools.pairwise(window)]
    report: dict[str, Any] = {
        "engagements": len(sampled),
        "reached_version": len(fresh),
        "no_example": no_example,
        "unreached": unreached,
        "examples_per_s": round(examples_live / live_s, 1),
        "versions_used": len(used),
        "version_interval_mean_s": round(float(np.mean(gaps)), 3) if gaps else float("nan"),
    }
    report |= percentiles(fresh, "freshness")
    report |= percentiles(join, "join")
    report |= percentiles(learner, "learner")
    return report


def add_baselines(report: dict[str, Any], profile: Profile) -> None:
    p50 = report["freshness_p50_s"]
    ideal = profile.checkpoint_interval_s + profile.publish_every_s
    cadence = report["join_p50_s"] + report["version_interval_mean_s"] / 2
    report |= {
        "ideal_pipeline_s": ideal,
        "ratio_p50_vs_join_p50": round(p50 / report["join_p50_s"], 2),
        "ratio_p50_vs_ideal": round(p50 / ideal, 3),
        "ratio_max_vs_ideal": round(report["freshness_max_s"] / ideal, 3),
        "cadence_expected_s": round(cadence, 3),
        "ratio_p50_vs_cadence_expected": round(p50 / cadence, 3),
        "target_p50_s": TARGET_P50_S,
        "target_met": bool(p50 <= TARGET_P50_S),
    }


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


def settings_report(profile: Profile, settings: Settings) -> dict[str, Any]:
    used = asdict(profile)
    used["user_id_buckets"] = settings.learner.user_id_buckets
    used["post_id_buckets"] = settings.learner.post_id_buckets
    used["partitions"] = settings.topics.partitions
    used["parallelism"] = settings.flink.parallelism
    used["checkpoint_every_s"] = settings.learner.checkpoint_every_s
    used["publish_every_examples"] = settings.learner.publish_every_examples
    return used


def describe_settings(settings: Settings, profile: Profile) -> str:
    learner = settings.learner
    return (
        f"settings: join checkpoint every {settings.flink.checkpoint_interval_s}s, parallelism "
        f"{settings.flink.parallelism}, {settings.topics.partitions} partitions, reward window "
        f"{profile.reward_window_s}s; learner micro-batch {learner.micro_batch_size}, publish "
        f"every {learner.publish_every_s}s (or {learner.publish_every_examples:,} examples), "
        f"checkpoint every {learner.checkpoint_every_s}s; world {profile.posts:,} posts, "
        f"{profile.users:,} users; traffic {profile.rate}/s x {profile.items} items, likes on "
        f"{profile.like_share:.0%} of decisions {profile.like_delay_s}s later"
    )


def print_text(report: dict[str, Any]) -> None:
    rows = [
        ("reward -> version (freshness)", "freshness"),
        ("reward -> example (join)", "join"),
        ("example -> version (learner)", "learner"),
    ]
    print(f"{'':32}{'p50 s':>10}{'p95 s':>10}{'min s':>10}{'max s':>10}")
    for label, prefix in rows:
        values = (report[f"{prefix}_{q}_s"] for q in ("p50", "p95", "min", "max"))
        print(f"{label:32}" + "".join(f"{value:>10.2f}" for value in values))
    print()
    for name, value in report.items():
        print(f"{name:>32}: {value}")


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
