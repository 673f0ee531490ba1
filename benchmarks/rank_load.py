"""End-to-end Rank load test: real gRPC workers, real broker, load from this machine.

    .venv/bin/python benchmarks/rank_load.py                 # full: 1M posts, 100k users
    .venv/bin/python benchmarks/rank_load.py --smoke         # CI-sized: 20k posts, seconds

Every figure is a ratio against a baseline measured in the same run:

* the bare retrieval ceiling: hnswlib k=1000 queries/s on the same cores (one process
  per worker, no gRPC, no ranking);
* saturation throughput of Rank (closed loop, many calls in flight), with decision
  logging to Kafka on and off, in alternating rounds after a logged warm-up
  (``benchmarks/rank_load_serving.py``), on a broker that has had decision-like load
  while the world was built (``local_broker.warming``: a fresh broker's produce path
  costs 2-3 x more in its first minute);
* p50/p99 latency at 80% of the saturation throughput (open loop, Poisson arrivals),
  beside what an M/D/c queue (``benchmarks/queueing.py``: c = the cores, every call
  taking the measured saturation's service time) gives at the same load: the latency
  queueing alone costs, and the service time a p99 target needs;
* memory: proportional set size (PSS, shared pages split fairly) and RSS of all
  serving processes together;
* Rank's cost against its necessary work (issue 23): the workers' CPU per served Rank
  (``/proc``, over the saturation run with logging on) against the in-process filtered
  retrieval plus the ranker's dense layers, and the filtered retrieval against a bare
  hnswlib query, both measured in this run by ``benchmarks/rank_cost.py``.

The service serves a version with the learners' model shapes (two towers and a ranker
at their default configs, seeded and untrained: their cost does not depend on their
weights), served as the model loader serves every version (the user tower packed).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

# prometheus_client must see this before anything imports it (workers share metrics).
_METRICS_DIR = tempfile.mkdtemp(prefix="feedrank-bench-metrics-")
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", _METRICS_DIR)

import torch  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402

from benchmarks.load_client import ghz_available  # noqa: E402
from benchmarks.local_broker import warming  # noqa: E402
from benchmarks.queueing import deterministic_service_latency, service_time_for_p99  # noqa: E402
from benchmarks.rank_cost import StageCosts, build, measure, print_costs  # noqa: E402
from benchmarks.rank_load_serving import logging_on_and_off  # noqa: E402
from feedrank.core.clock import SystemClock  # noqa: E402
from feedrank.core.kafka_topics import TopicSpec, ensure_topics  # noqa: E402
from feedrank.core.settings import Settings, load_settings  # noqa: E402
from feedrank.explore.app import ServingState  # noqa: E402
from feedrank.stack.jars import fetch_jars  # noqa: E402
from feedrank.stack.kafka_broker import BrokerConfig, KafkaBroker  # noqa: E402
from tests.support.kafka import free_port  # noqa: E402

P99_TARGET_MS = 30.0
WARM_UP_TOPIC = "bench.broker-warm-up"  # the new broker's load while the world is built


@dataclass(frozen=True)
class Report:
    posts: int
    workers: int
    threads_per_worker: int
    candidates: int
    limit: int
    retrieval_ceiling_qps: float
    saturation_qps_logging: float
    saturation_qps_no_logging: float
    p50_ms_at_80pct: float
    p99_ms_at_80pct: float
    offered_qps_at_80pct: float
    errors: int
    pss_mb: float
    rss_mb: float
    client: str
    cores: int
    queue_p50_ms_at_80pct: float  # M/D/c at the measured service time
    queue_p99_ms_at_80pct: float
    service_ms_for_p99_target: float  # the service time an M/D/c needs for p99 <= 30 ms
    served_cpu_ms_per_rank: float  # the workers' CPU per Rank at saturation, logging on
    served_cpu_ms_per_rank_no_logging: float  # the same with logging off
    broker_cpu_ms_per_rank: float  # the broker's, over the same run
    broker_cpu_ms_per_rank_no_logging: float  # the broker's with logging off (idle)
    costs: StageCosts  # in process: the necessary work and the stages (rank_cost)
    rounds: int  # alternating logging off/on pairs the saturations are measured in
    warm_up_s: float  # logged load before them, not counted
    broker_warm_up_s: float  # decision-like load on the new broker while the world was built
    on_off_seconds: float  # of each mode, split over the rounds

    @property
    def throughput_vs_ceiling(self) -> float:
        return self.saturation_qps_logging / self.retrieval_ceiling_qps

    @property
    def logging_on_vs_off(self) -> float:
        return self.saturation_qps_logging / self.saturation_qps_no_logging

    @property
    def served_cpu_vs_necessary(self) -> float:
        return self.served_cpu_ms_per_rank / self.costs.necessary_ms


def retrieval_ceiling(
    state: ServingState, settings: Settings, workers: int, seconds: float
) -> float:
    """hnswlib k=candidates queries/s with one process per worker, forked like the workers."""
    users = state.store
    now = SystemClock().now_ms()
    model = state.model
    vectors = model.two_tower.encode_users(
        [users.user_features(f"u{index}", now) for index in range(256)]
    )
    max_age = int(settings.explore.max_post_age_days * 86_400_000)
    context = multiprocessing.get_context("fork")
    counts = context.Array("d", workers)

    def search(slot: int) -> None:
        torch.set_num_threads(1)
        done, deadline = 0, time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            model.index.search(
                vectors[done % len(vectors)],
                settings.explore.candidates,
                languages=[done % 3],
                country=0,
                min_created_ms=now - max_age,
                max_created_ms=now,
            )
            done += 1
        counts[slot] = done / seconds

    processes = [context.Process(target=search, args=(slot,)) for slot in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    return float(sum(counts[:]))


def main() -> None:
    args = parse_arguments()
    torch.set_num_threads(1)
    jars = fetch_jars(load_settings())
    data_dir = Path(tempfile.mkdtemp(prefix="feedrank-bench-kafka-"))
    broker = KafkaBroker(
        BrokerConfig(
            data_dir=data_dir, jar_dir=jars.kafka_dir, port=free_port(), controller_port=free_port()
        ),
        log_file=data_dir / "kafka.log",
    )
    process = broker.start(tie_to_parent=True)
    try:
        broker.wait_ready(process, timeout_s=90)
        topic = "bench.decisions"
        ensure_topics(
            AdminClient({"bootstrap.servers": broker.bootstrap}),
            [TopicSpec(topic, 3, 1, 3_600_000), TopicSpec(WARM_UP_TOPIC, 3, 1, 3_600_000)],
        )
        settings = load_settings(
            kafka={"bootstrap_servers": broker.bootstrap},
            topics={"decisions": topic},
            world={
                "num_posts": args.posts,
                "num_users": args.users,
                "num_creators": max(args.posts // 50, 10),
            },
            # Rank alone: no feature updater reading the topics beside the load.
            explore={
                "workers": args.workers,
                "default_limit": args.limit,
                "feature_updates": False,
                **({} if args.threads is None else {"worker_threads": args.threads}),
            },
        )
        report = run(settings, args, broker_pid=process.pid)
    finally:
        process.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(_METRICS_DIR, ignore_errors=True)
    print_report(report, args.json)


def run(settings: Settings, args: argparse.Namespace, *, broker_pid: int) -> Report:
    started = time.perf_counter()
    # The broker is new: it gets decision-like load while the world is built (minutes at
    # 1M posts), so that the rounds measure a broker past its first minute of load.
    with warming(settings.kafka.bootstrap, WARM_UP_TOPIC):
        catalogue, store, model, now_ms = build(settings, show_progress=not args.json)
    broker_warm_up_s = time.perf_counter() - started
    state = ServingState(catalogue, store, model)
    print(f"built world and index in {broker_warm_up_s:.1f}s", file=sys.stderr)
    costs = measure(settings, store, model, now_ms, args.queries, args.users)
    ceiling = retrieval_ceiling(state, settings, args.workers, args.seconds)
    on_off = logging_on_and_off(state, settings, args, broker_pid=broker_pid)
    served, unlogged = on_off.logged, on_off.unlogged
    without_log = unlogged.saturation
    with_log, latency = served.saturation, served.latency
    assert latency is not None
    cores = os.cpu_count() or 1
    service_s = cores / with_log.qps  # each core serves saturation / cores calls a second
    load = min(latency.offered_qps / with_log.qps, 0.99)
    queue = deterministic_service_latency(load * with_log.qps, service_s, cores)
    return Report(
        posts=args.posts,
        workers=args.workers,
        threads_per_worker=settings.explore.worker_threads,
        candidates=settings.explore.candidates,
        limit=args.limit,
        retrieval_ceiling_qps=ceiling,
        saturation_qps_logging=with_log.qps,
        saturation_qps_no_logging=without_log.qps,
        p50_ms_at_80pct=latency.p50_ms,
        p99_ms_at_80pct=latency.p99_ms,
        offered_qps_at_80pct=latency.offered_qps,
        errors=with_log.errors + without_log.errors + latency.errors,
        pss_mb=served.pss_mb,
        rss_mb=served.rss_mb,
        client=args.client,
        cores=cores,
        queue_p50_ms_at_80pct=queue.p50_ms,
        queue_p99_ms_at_80pct=queue.p99_ms,
        service_ms_for_p99_target=1000 * service_time_for_p99(P99_TARGET_MS, load, cores),
        served_cpu_ms_per_rank=served.worker_cpu_ms_per_rank,
        served_cpu_ms_per_rank_no_logging=unlogged.worker_cpu_ms_per_rank,
        broker_cpu_ms_per_rank=served.broker_cpu_ms_per_rank,
        broker_cpu_ms_per_rank_no_logging=unlogged.broker_cpu_ms_per_rank,
        costs=costs,
        rounds=on_off.rounds,
        warm_up_s=on_off.warm_up_s,
        broker_warm_up_s=round(broker_warm_up_s, 1),
        on_off_seconds=args.on_off_seconds,
    )


def print_report(report: Report, as_json: bool) -> None:
    ratios = {
        "throughput_vs_retrieval_ceiling": round(report.throughput_vs_ceiling, 3),
        "logging_on_vs_off": round(report.logging_on_vs_off, 3),
        "p99_vs_queueing": round(report.p99_ms_at_80pct / report.queue_p99_ms_at_80pct, 3),
        "served_cpu_vs_necessary": round(report.served_cpu_vs_necessary, 3),
        # None when no partition has a graph (a catalogue too small for one)
        "filtered_retrieval_vs_bare": finite_or_none(round(report.costs.filtered_vs_bare, 3)),
    }
    if as_json:
        print(json.dumps(without_nan({**asdict(report), **ratios}), indent=2))
        return
    print(
        f"posts {report.posts:,}, {report.workers} workers x {report.threads_per_worker} "
        f"threads, {report.candidates} candidates, "
        f"{report.limit} returned"
    )
    print(
        f"retrieval ceiling (hnswlib k={report.candidates}): "
        f"{report.retrieval_ceiling_qps:,.0f} queries/s"
    )
    print(
        f"Rank saturation, logging on : {report.saturation_qps_logging:,.0f}/s "
        f"= {ratios['throughput_vs_retrieval_ceiling']:.2f} x ceiling (target >= 0.25)"
    )
    print(
        f"Rank saturation, logging off: {report.saturation_qps_no_logging:,.0f}/s; "
        f"on/off = {ratios['logging_on_vs_off']:.2f} (target >= 0.95)"
    )
    print(
        f"at 80% load ({report.offered_qps_at_80pct:,.0f}/s): p50 {report.p50_ms_at_80pct:.1f} ms,"
        f" p99 {report.p99_ms_at_80pct:.1f} ms (target p99 <= {P99_TARGET_MS:.0f} ms)"
    )
    print(
        f"  an M/D/{report.cores} queue at the same load, every call "
        f"{1000 * report.cores / report.saturation_qps_logging:.1f} ms: p50 "
        f"{report.queue_p50_ms_at_80pct:.1f} ms, p99 {report.queue_p99_ms_at_80pct:.1f} ms "
        f"(measured p99 = {ratios['p99_vs_queueing']:.2f} x); p99 <= {P99_TARGET_MS:.0f} ms "
        f"needs calls of <= {report.service_ms_for_p99_target:.1f} ms "
        f"(saturation >= {1000 * report.cores / report.service_ms_for_p99_target:,.0f}/s)"
    )
    print(
        f"memory of all serving processes: PSS {report.pss_mb:,.0f} MiB, "
        f"RSS {report.rss_mb:,.0f} MiB (target <= 2,500 MiB)"
    )
    print(
        f"served CPU per Rank (workers, logging on): {report.served_cpu_ms_per_rank:.2f} ms "
        f"= {ratios['served_cpu_vs_necessary']:.2f} x the necessary work (target <= 1.5); "
        f"the broker's: {report.broker_cpu_ms_per_rank:.2f} ms; with logging off "
        f"{report.served_cpu_ms_per_rank_no_logging:.2f} ms, the broker's "
        f"{report.broker_cpu_ms_per_rank_no_logging:.2f} ms"
    )
    print_costs(report.costs)
    print(f"errors: {report.errors}")


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def without_nan(value: object) -> object:
    """``value`` with every non-finite float replaced by None (valid JSON)."""
    if isinstance(value, dict):
        return {key: without_nan(item) for key, item in value.items()}
    if isinstance(value, float):
        return finite_or_none(value)
    return value


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--posts", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="gRPC handler threads per worker (settings' default)",
    )
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument(
        "--seconds",
        type=float,
        default=20.0,
        help="per measurement: the retrieval ceiling and the latency run",
    )
    # Two rounds of 10 s gave on/off 0.827, 0.922 and 0.969 for one code within an hour on
    # one box; eight of 15 s gave 0.970 and 0.988 (docs/benchmarks.md, "Session 25").
    parser.add_argument(
        "--on-off-seconds",
        type=float,
        default=120.0,
        help="logging off, and again logging on, split over the rounds",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=8,
        help="alternating logging off/on pairs the saturations are measured in",
    )
    parser.add_argument(
        "--warm-up",
        type=float,
        default=5.0,
        help="seconds of logged load before the rounds, not counted (warms the broker)",
    )
    parser.add_argument("--in-flight", type=int, default=8, help="closed-loop concurrency")
    parser.add_argument(
        "--queries", type=int, default=400, help="in-process Rank calls per cost measurement"
    )
    parser.add_argument("--smoke", action="store_true", help="CI-sized: 20k posts, 2 s runs")
    parser.add_argument(
        "--client",
        choices=("ghz", "python"),
        default="ghz" if ghz_available() else "python",
        help="load generator: ghz (compiled, default when installed) or Python gRPC clients",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    if args.smoke:
        args.posts, args.users, args.seconds, args.queries = 20_000, 2_000, 2.0, 50
        args.on_off_seconds, args.rounds = 4.0, 2
        args.warm_up = 1.0
    return args


if __name__ == "__main__":
    main()
