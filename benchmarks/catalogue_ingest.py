"""Catalogue ingestion benchmark: an app's posts through Kafka into explore's serving state.

    .venv/bin/python -m benchmarks.catalogue_ingest                  # 100k posts, 20k tailed
    .venv/bin/python -m benchmarks.catalogue_ingest --smoke --json   # seconds, for CI

Starts a KRaft broker of its own (``benchmarks/local_broker.py``; ``--bootstrap`` uses
another), creates fresh entity topics with the production compaction settings
(``feedrank.stack.topics.entity_topics``) and measures, in one run:

* the app's side: ``EventProducer.upsert_post`` of ``--posts`` posts (32-d embedding,
  topics, features), flushed, in posts/s;
* start-up: ``replay_catalogue`` (consume, decode, apply) and ``build_serving_state``
  (post tower over every live post, index build), each in posts/s;
* the incremental path a running worker takes: ``--tail-posts`` more posts wait in the
  topic, then ``worker_backend`` starts its ``CatalogueTail`` over the state built above
  and each batch is decoded, applied, embedded and inserted into ``model.index``; the
  clock runs from the tail's start until every one of them is in the index;
* upsert -> servable: single upserts, one at a time, from ``upsert_post`` until the row
  is in the index (polled every 2 ms), p50 and p99;
* delete -> never served: single deletes of indexed posts until the row leaves the
  index, p50 and p99.

The baseline, measured in the same run: ``entity_codecs.decode_post_event`` alone over
the same payloads (decode and validation, nothing else), in posts/s. Every ingestion
rate is also given as a ratio against it. Targets: the tail >= 10,000 post upserts/s,
upsert -> servable p50 <= 2 s, delete -> gone p99 <= 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka.admin import AdminClient

from benchmarks.local_broker import broker
from feedrank.client import entities
from feedrank.client.events import EventProducer, TopicNames
from feedrank.core import codecs, entity_codecs
from feedrank.core.clock import SystemClock
from feedrank.core.feature_schema import CONTENT_DIM, LANGUAGES, NUM_TOPICS
from feedrank.core.kafka_topics import TopicSpec, ensure_topics
from feedrank.core.settings import Settings, TopicSettings, load_settings
from feedrank.core.time_units import HOUR_MS
from feedrank.explore.app import (
    BackgroundBackend,
    ServingState,
    build_serving_state,
    explore_service,
    use_one_core,
    worker_backend,
)
from feedrank.explore.catalogue_source import replay_catalogue
from feedrank.stack.topics import entity_topics

TAIL_TARGET_POSTS_PER_S = 10_000.0
UPSERT_P50_TARGET_S = 2.0
DELETE_P99_TARGET_S = 2.0
POLL_S = 0.002
SAMPLE_TIMEOUT_S = 30.0
LANGUAGE_SHARES = np.array([0.35, 0.2, 0.12, 0.1, 0.08, 0.07, 0.05, 0.03])
HEADERS = [(codecs.CONTENT_TYPE_HEADER, codecs.PROTOBUF_CONTENT_TYPE.encode())]


@dataclass(frozen=True)
class Report:
    posts: int
    tail_posts: int
    samples: int
    cores: int
    producer_posts_per_s: float
    decode_only_posts_per_s: float  # the baseline
    replay_posts_per_s: float  # consume + decode + apply
    build_posts_per_s: float  # post tower + index build
    replay_build_posts_per_s: float  # the two together: a cold start
    tail_posts_per_s: float  # consume + decode + apply + embed + index insert
    tail_first_batch_s: float  # tail start -> first tailed post in the index
    upsert_to_servable_p50_s: float
    upsert_to_servable_p99_s: float
    upsert_to_servable_max_s: float
    delete_p50_s: float
    delete_p99_s: float
    delete_max_s: float
    timeouts: int  # samples that did not land within SAMPLE_TIMEOUT_S
    rejected: int  # records the replay refused (should be 0)
    wall_s: float

    def ratios(self) -> dict[str, float]:
        decode = self.decode_only_posts_per_s
        return {
            "tail_vs_decode_only": round(self.tail_posts_per_s / decode, 4),
            "replay_vs_decode_only": round(self.replay_posts_per_s / decode, 4),
            "replay_build_vs_decode_only": round(self.replay_build_posts_per_s / decode, 4),
            "producer_vs_decode_only": round(self.producer_posts_per_s / decode, 4),
        }

    def targets(self) -> dict[str, bool]:
        return {
            "tail_target_met": self.tail_posts_per_s >= TAIL_TARGET_POSTS_PER_S,
            "upsert_to_servable_target_met": (
                self.timeouts == 0 and self.upsert_to_servable_p50_s <= UPSERT_P50_TARGET_S
            ),
            "delete_target_met": self.timeouts == 0 and self.delete_p99_s <= DELETE_P99_TARGET_S,
        }


def say(message: str) -> None:
    print(f"[catalogue-ingest {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class PostMaker:
    """Deterministic synthetic posts: skewed languages, 1-3 topics, a 32-d embedding."""

    def __init__(self, seed: int, now_ms: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.now_ms = now_ms

    def fields(self, index: int) -> dict[str, Any]:
        rng = self.rng
        count = int(rng.integers(1, 4))
        topics = [f"topic_{t}" for t in rng.choice(NUM_TOPICS, count, replace=False)]
        embedding = rng.standard_normal(CONTENT_DIM).astype(np.float32)
        embedding /= np.linalg.norm(embedding)
        return {
            "creator_id": f"creator-{index % 5_000}",
            "created_ms": self.now_ms - int(rng.integers(0, 7 * 24)) * HOUR_MS,
            "language": LANGUAGES[int(rng.choice(len(LANGUAGES), p=LANGUAGE_SHARES))],
            "topics": topics,
            "topic_weights": rng.uniform(0.1, 1.0, count).round(3).tolist(),
            "embedding": embedding.tolist(),
            "features": {
                "quality": round(float(rng.uniform()), 3),
                "creator_followers": int(rng.integers(0, 100_000)),
            },
        }


def produce_posts(
    producer: EventProducer, maker: PostMaker, ids: list[str], ts_ms: int, what: str
) -> float:
    """Upsert every post in ``ids`` and flush; posts/s including the flush (the posts'
    fields are drawn before the clock starts)."""
    posts = [maker.fields(index) for index in range(len(ids))]
    started = time.perf_counter()
    step = max(len(ids) // 5, 1)
    for done, (post_id, fields) in enumerate(zip(ids, posts, strict=True), start=1):
        producer.upsert_post(post_id, ts_ms=ts_ms, **fields)
        if done % step == 0:
            say(f"{what}: produced {done:,}/{len(ids):,}")
    producer.flush(120.0)
    return len(ids) / (time.perf_counter() - started)


def decode_only_rate(maker: PostMaker, count: int, ts_ms: int) -> float:
    """The baseline: decode_post_event alone over ``count`` payloads like those produced."""
    payloads = [
        codecs.encode(entities.post_upsert(f"post-{i}", ts_ms=ts_ms, **maker.fields(i)))
        for i in range(count)
    ]
    best = 0.0
    for _ in range(3):  # best of three: the baseline should be the codec's real speed
        started = time.perf_counter()
        for payload in payloads:
            entity_codecs.decode_post_event(payload, HEADERS)
        best = max(best, count / (time.perf_counter() - started))
    return best


def wait_for(condition: Callable[[], bool], timeout_s: float = SAMPLE_TIMEOUT_S) -> float | None:
    """Seconds until ``condition`` held (polled every 2 ms); None after ``timeout_s``."""
    started = time.perf_counter()
    while not condition():
        if time.perf_counter() - started > timeout_s:
            return None
        time.sleep(POLL_S)
    return time.perf_counter() - started


def indexed(state: ServingState, post_id: str) -> bool:
    row = state.catalogue.post_row(post_id)
    return row is not None and row in state.model.index


@contextmanager
def tailing(settings: Settings, state: ServingState) -> Iterator[BackgroundBackend]:
    clock = SystemClock()
    service = explore_service(settings, clock, state, log_decisions=False)
    backend = worker_backend(settings, clock, state, service)
    try:
        yield backend
    finally:
        backend.close()


def wait_for_tail(
    state: ServingState, before: int, tail_posts: int, started: float
) -> tuple[float, float]:
    """Poll until the index holds ``tail_posts`` more than ``before``: (posts/s, seconds from
    ``started`` to the first tailed post in the index)."""
    index = state.model.index
    first = wait_for(lambda: len(index) > before, timeout_s=120.0)
    if first is None:
        raise TimeoutError("the tail indexed nothing in 120 s")
    first = time.perf_counter() - started
    last_report = time.perf_counter()
    while len(index) < before + tail_posts:
        now = time.perf_counter()
        if now - started > 600.0:
            raise TimeoutError(f"the tail indexed {len(index) - before:,}/{tail_posts:,} in 600 s")
        if now - last_report > 5.0:
            say(f"tail: {len(index) - before:,}/{tail_posts:,} indexed")
            last_report = now
        time.sleep(POLL_S)
    return tail_posts / (time.perf_counter() - started), first


def latencies(
    producer: EventProducer,
    samples: int,
    spacing_s: float,
    act: Callable[[int], None],
    done: Callable[[int], bool],
) -> tuple[list[float], int]:
    """Seconds from ``act(i)`` (flushed) until ``done(i)``, one sample at a time."""
    measured, timeouts = [], 0
    for sample in range(samples):
        started = time.perf_counter()
        act(sample)
        producer.flush(30.0)
        waited = wait_for(partial(done, sample))
        if waited is None:
            timeouts += 1
        else:
            measured.append(time.perf_counter() - started)
        time.sleep(spacing_s)
    return measured, timeouts


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


@dataclass(frozen=True)
class ColdStart:
    producer_posts_per_s: float
    replay_s: float
    build_s: float
    rejected: int
    state: ServingState


def cold_start(
    settings: Settings, producer: EventProducer, maker: PostMaker, ids: list[str]
) -> ColdStart:
    """Produce the catalogue, then replay it and build the serving state, each timed."""
    clock = SystemClock()
    producer_rate = produce_posts(producer, maker, ids, maker.now_ms, "catalogue")
    say(f"producer: {producer_rate:,.0f} posts/s")
    started = time.perf_counter()
    replayed = replay_catalogue(settings, clock)
    replay_s = time.perf_counter() - started
    say(f"replay (consume, decode, apply): {replayed.records:,} records in {replay_s:.1f} s")
    started = time.perf_counter()
    state = build_serving_state(
        settings, clock, replayed.state, positions=replayed.positions, show_progress=False
    )
    build_s = time.perf_counter() - started
    say(f"build (embed, index): {len(state.model.index):,} posts in {build_s:.1f} s")
    return ColdStart(producer_rate, replay_s, build_s, replayed.rejected, state)


@dataclass(frozen=True)
class Tailed:
    posts_per_s: float
    first_batch_s: float
    upserts: list[float]
    deletes: list[float]
    timeouts: int


def tail_and_sample(
    settings: Settings,
    producer: EventProducer,
    maker: PostMaker,
    state: ServingState,
    catalogue_ids: list[str],
    args: argparse.Namespace,
) -> Tailed:
    """The tail over a backlog, then single upserts and deletes while it runs."""
    clock = SystemClock()
    tail_ids = [f"tail-{i}" for i in range(args.tail_posts)]
    produce_posts(producer, maker, tail_ids, maker.now_ms, "tail backlog")
    before = len(state.model.index)
    say(f"starting the tail over a backlog of {args.tail_posts:,} posts")
    started = time.perf_counter()
    with tailing(settings, state):
        rate, first_batch_s = wait_for_tail(state, before, args.tail_posts, started)
        missing = [post_id for post_id in tail_ids if not indexed(state, post_id)]
        if missing:
            raise RuntimeError(f"{len(missing)} tailed posts are not indexed, e.g. {missing[0]}")
        say(f"tail: {rate:,.0f} posts/s (first batch in the index after {first_batch_s:.2f} s)")

        live_ids = [f"live-{i}" for i in range(args.samples)]
        say(f"upsert -> servable: {args.samples} single upserts")
        upserts, upsert_timeouts = latencies(
            producer,
            args.samples,
            args.spacing_s,
            lambda i: producer.upsert_post(live_ids[i], ts_ms=clock.now_ms(), **maker.fields(i)),
            lambda i: indexed(state, live_ids[i]),
        )
        victims = catalogue_ids[:: max(len(catalogue_ids) // args.samples, 1)][: args.samples]
        rows = [state.catalogue.post_row(post_id) for post_id in victims]
        victim_rows = [row for row in rows if row is not None and row in state.model.index]
        if len(victim_rows) != len(victims):
            raise RuntimeError("a post chosen for deletion is not indexed")
        say(f"delete -> gone: {len(victims)} single deletes")
        deletes, delete_timeouts = latencies(
            producer,
            len(victims),
            args.spacing_s,
            lambda i: producer.delete_post(victims[i], ts_ms=clock.now_ms()),
            lambda i: victim_rows[i] not in state.model.index,
        )
    return Tailed(rate, first_batch_s, upserts, deletes, upsert_timeouts + delete_timeouts)


def run(address: str, args: argparse.Namespace) -> Report:
    """One run on the broker at ``address`` over fresh topics."""
    wall = time.perf_counter()
    tag = uuid.uuid4().hex[:8]
    names = {kind: f"bench.ingest.{kind}.{tag}" for kind in ("posts", "users", "graph", "dlq")}
    topics = TopicSettings.model_validate({**names, "partitions": args.partitions})
    admin = AdminClient({"bootstrap.servers": address})
    ensure_topics(admin, [*entity_topics(topics), TopicSpec(names["dlq"], 1, 1, 3_600_000)])
    settings = load_settings(
        kafka={"bootstrap_servers": address},
        topics={**names, "partitions": args.partitions},
        explore={"feature_updates": False},
    )
    now_ms = SystemClock().now_ms()
    decode_count = min(args.posts, 50_000)
    say(f"decode-only baseline over {decode_count:,} payloads")
    decode_rate = decode_only_rate(PostMaker(args.seed + 1, now_ms), decode_count, now_ms)
    say(f"decode only: {decode_rate:,.0f} posts/s")
    maker = PostMaker(args.seed, now_ms)
    app_topics = TopicNames(posts=names["posts"], users=names["users"], graph=names["graph"])
    ids = [f"post-{i}" for i in range(args.posts)]
    try:
        with EventProducer(address, topics=app_topics) as producer:
            cold = cold_start(settings, producer, maker, ids)
            tailed = tail_and_sample(settings, producer, maker, cold.state, ids, args)
    finally:
        if args.bootstrap is not None:  # someone else's broker: leave no topics behind
            for future in admin.delete_topics(list(names.values()), operation_timeout=30).values():
                future.result()
    return Report(
        posts=args.posts,
        tail_posts=args.tail_posts,
        samples=args.samples,
        cores=os.cpu_count() or 1,
        producer_posts_per_s=round(cold.producer_posts_per_s, 1),
        decode_only_posts_per_s=round(decode_rate, 1),
        replay_posts_per_s=round(args.posts / cold.replay_s, 1),
        build_posts_per_s=round(args.posts / cold.build_s, 1),
        replay_build_posts_per_s=round(args.posts / (cold.replay_s + cold.build_s), 1),
        tail_posts_per_s=round(tailed.posts_per_s, 1),
        tail_first_batch_s=round(tailed.first_batch_s, 3),
        upsert_to_servable_p50_s=round(percentile(tailed.upserts, 50), 4),
        upsert_to_servable_p99_s=round(percentile(tailed.upserts, 99), 4),
        upsert_to_servable_max_s=round(max(tailed.upserts, default=float("nan")), 4),
        delete_p50_s=round(percentile(tailed.deletes, 50), 4),
        delete_p99_s=round(percentile(tailed.deletes, 99), 4),
        delete_max_s=round(max(tailed.deletes, default=float("nan")), 4),
        timeouts=tailed.timeouts,
        rejected=cold.rejected,
        wall_s=round(time.perf_counter() - wall, 1),
    )


def print_report(report: Report, as_json: bool) -> None:
    ratios, targets = report.ratios(), report.targets()
    if as_json:
        print(json.dumps({**asdict(report), **ratios, **targets}, indent=2))
        return

    def verdict(met: bool) -> str:
        return "met" if met else "MISSED"

    decode = report.decode_only_posts_per_s
    rates = [
        ("decode only (baseline)", decode, ""),
        ("producer (upsert_post + flush)", report.producer_posts_per_s, ""),
        ("replay (consume, decode, apply)", report.replay_posts_per_s, ""),
        ("build (embed, index build)", report.build_posts_per_s, ""),
        ("replay + build (cold start)", report.replay_build_posts_per_s, ""),
        (
            "tail (decode, apply, embed, insert)",
            report.tail_posts_per_s,
            f">= {TAIL_TARGET_POSTS_PER_S:,.0f}/s: {verdict(targets['tail_target_met'])}",
        ),
    ]
    print(
        f"{report.posts:,} posts, {report.tail_posts:,} tailed, {report.samples} latency "
        f"samples, {report.cores} cores"
    )
    print(f"{'path':38}{'posts/s':>12}{'x decode':>10}  target")
    for label, rate, target in rates:
        print(f"{label:38}{rate:>12,.0f}{rate / decode:>10.3f}  {target}")
    print(f"tail start -> first batch in the index: {report.tail_first_batch_s:.2f} s")
    print(f"{'latency':38}{'p50 s':>10}{'p99 s':>10}{'max s':>10}  target")
    print(
        f"{'upsert -> servable':38}{report.upsert_to_servable_p50_s:>10.3f}"
        f"{report.upsert_to_servable_p99_s:>10.3f}{report.upsert_to_servable_max_s:>10.3f}  "
        f"p50 <= {UPSERT_P50_TARGET_S:g} s: {verdict(targets['upsert_to_servable_target_met'])}"
    )
    print(
        f"{'delete -> never served':38}{report.delete_p50_s:>10.3f}"
        f"{report.delete_p99_s:>10.3f}{report.delete_max_s:>10.3f}  "
        f"p99 <= {DELETE_P99_TARGET_S:g} s: {verdict(targets['delete_target_met'])}"
    )
    print(f"timeouts: {report.timeouts}, rejected records: {report.rejected}")


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Progress goes to stderr, the report to stdout.",
    )
    parser.add_argument("--posts", type=int, default=100_000, help="catalogue posts (100,000)")
    parser.add_argument(
        "--tail-posts", type=int, default=20_000, help="posts the running tail ingests (20,000)"
    )
    parser.add_argument("--samples", type=int, default=50, help="single upserts and deletes (50)")
    parser.add_argument(
        "--spacing-s", type=float, default=0.1, help="pause between latency samples (0.1)"
    )
    parser.add_argument("--partitions", type=int, default=3, help="per entity topic (3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bootstrap", help="use this broker instead of starting one")
    parser.add_argument("--smoke", action="store_true", help="CI-sized: 5k posts, 2k tailed")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    if args.smoke:
        args.posts, args.tail_posts, args.samples = 5_000, 2_000, 10
    if args.posts < args.samples or args.samples < 1:
        parser.error("--posts must be at least --samples, and --samples at least 1")
    return args


def main() -> None:
    args = parse_arguments()
    use_one_core()  # as a serving worker: one torch thread, one BLAS thread
    with (
        tempfile.TemporaryDirectory(prefix="bench-catalogue-ingest-") as temporary,
        broker(args.bootstrap, Path(temporary)) as address,
    ):
        report = run(address, args)
    print_report(report, args.json)


if __name__ == "__main__":
    main()
