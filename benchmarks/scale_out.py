"""Scale-out: Rank with 1 and 2 explore replicas behind HAProxy, the join at parallelism 1 and 2.

    .venv/bin/python -m benchmarks.scale_out              # full: 20k posts, 20 s per load
    .venv/bin/python -m benchmarks.scale_out --smoke --json

**Rank.** One Kafka broker (``benchmarks/local_broker.py``, or ``--bootstrap``), a world
on private topics, two replicas of the cluster topology (``feedrank serve``, one worker
each by default) started by the stack's own components, and the stack's HAProxy. A
closed loop (ghz, ``--concurrency`` calls in flight for ``--seconds``) runs three
times, after a short warm-up each: straight at replica 1 (the baseline: no balancer),
through a balancer over replica 1 alone, and through a balancer over both. Each run
reports calls/s, p50, p99, errors and what one Rank cost each piece in CPU (replicas,
HAProxy, the load generator), read from ``/proc``.

**Join.** ``benchmarks.scale_out_join`` as a child process, once with
``FEEDRANK_FLINK__PARALLELISM=1`` and once with ``=2``: the join drains the same
backlog as ``benchmarks.join_throughput``'s throughput phase; shown items/s.

On a 2-core machine neither ratio can show a speed-up: one replica's worker, HAProxy,
ghz and the broker already share both cores, so a second replica (or a second Flink
slot) adds processes, not cores. The ratios measure what scale-out costs here; the
per-call CPU figures are what a capacity model multiplies (docs/operations.md,
"Capacity model").
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.load_client import LoadResult, closed_loop, ghz, ghz_available
from benchmarks.local_broker import broker
from benchmarks.progress import progress
from benchmarks.scale_out_explore import (
    ExploreCluster,
    WorldSize,
    cluster_settings,
    explore_cluster,
    group_cpu_s,
)

ROOT = Path(__file__).resolve().parents[1]
JOIN_PARALLELISMS = (1, 2)
JOIN_TIMEOUT_S = 900

say = progress("scale-out")


@dataclass(frozen=True)
class RankRun:
    """One closed-loop measurement of Rank."""

    replicas: int
    balanced: bool
    qps: float
    p50_ms: float
    p99_ms: float
    errors: int
    explore_cpu_ms_per_call: float  # every replica in use, all their processes
    balancer_cpu_ms_per_call: float  # HAProxy (0 straight at a replica)
    client_cpu_ms_per_call: float  # the load generator (ghz and its protoset compile)
    cores_busy: float  # CPU seconds of the three above per second of load


def load(address: str, args: argparse.Namespace, seconds: float) -> LoadResult:
    binary = ghz_available() if args.client == "ghz" else None
    if args.client == "ghz" and binary is None:
        raise SystemExit("ghz is not installed: run `make bench-tools` or pass --client python")
    if binary is None:
        return closed_loop(address, args.users, args.limit, seconds, args.concurrency)
    return ghz(
        binary, address, args.users, args.limit, seconds, concurrency=args.concurrency, rate=None
    )


def measure_rank(
    address: str, replica_leaders: list[int], balancer_leader: int | None, args: argparse.Namespace
) -> RankRun:
    """Warm up, then one closed loop at ``address``, with the CPU each piece spent."""
    load(address, args, args.warmup_s)
    balancer = [] if balancer_leader is None else [balancer_leader]
    explore_before, balancer_before = group_cpu_s(replica_leaders), group_cpu_s(balancer)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # reaped: the load generator
    client_before = children.ru_utime + children.ru_stime
    result = load(address, args, args.seconds)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    explore_s = group_cpu_s(replica_leaders) - explore_before
    balancer_s = group_cpu_s(balancer) - balancer_before
    client_s = children.ru_utime + children.ru_stime - client_before
    calls = max(result.qps * args.seconds, 1.0)
    return RankRun(
        replicas=len(replica_leaders),
        balanced=balancer_leader is not None,
        qps=round(result.qps, 1),
        p50_ms=round(result.p50_ms, 2),
        p99_ms=round(result.p99_ms, 2),
        errors=result.errors,
        explore_cpu_ms_per_call=round(1000 * explore_s / calls, 3),
        balancer_cpu_ms_per_call=round(1000 * balancer_s / calls, 3),
        client_cpu_ms_per_call=round(1000 * client_s / calls, 3),
        cores_busy=round((explore_s + balancer_s + client_s) / args.seconds, 2),
    )


def rank_runs(cluster: ExploreCluster, args: argparse.Namespace) -> dict[str, RankRun]:
    first = cluster.replicas[0]
    runs: dict[str, RankRun] = {}
    say(f"direct: {args.concurrency} in flight at {first.name} for {args.seconds:.0f}s")
    runs["direct_1"] = measure_rank(first.endpoint, cluster.replica_pids(1), None, args)
    say(f"direct: {runs['direct_1'].qps:,.0f} Rank/s")
    for count in (1, 2):
        with cluster.balancer(count) as (balancer, leader):
            say(f"balancer over {count}: {args.concurrency} in flight for {args.seconds:.0f}s")
            run = measure_rank(balancer.endpoint, cluster.replica_pids(count), leader, args)
            runs[f"balanced_{count}"] = run
            say(f"balancer over {count}: {run.qps:,.0f} Rank/s")
    return runs


def join_run(parallelism: int, bootstrap: str, smoke: bool) -> dict[str, Any]:
    """``benchmarks.scale_out_join`` in a child process at ``parallelism``."""
    say(f"join at parallelism {parallelism}")
    command = [
        sys.executable,
        "-m",
        "benchmarks.scale_out_join",
        "--json",
        "--bootstrap",
        bootstrap,
    ]
    environment = {**os.environ, "FEEDRANK_FLINK__PARALLELISM": str(parallelism)}
    completed = subprocess.run(
        [*command, *(["--smoke"] if smoke else [])],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        text=True,
        timeout=JOIN_TIMEOUT_S,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"the join at parallelism {parallelism} failed: {completed.stdout}")
    report: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    if report["parallelism"] != parallelism:
        raise RuntimeError(f"asked for parallelism {parallelism}, the join ran {report}")
    say(f"join at parallelism {parallelism}: {report['join_items_per_s']:,} items/s")
    return report


def ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 3) if denominator else float("nan")


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    report: dict[str, Any] = {
        "cores": os.cpu_count() or 1,
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        "posts": args.posts,
        "users": args.users,
        "workers_per_replica": args.workers_per_replica,
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "limit": args.limit,
        "client": args.client,
    }
    with tempfile.TemporaryDirectory(prefix="bench-scale-out-") as temporary:
        work = Path(temporary)
        with broker(args.bootstrap, work) as address:
            if "rank" in args.parts:
                settings = cluster_settings(
                    address,
                    work,
                    WorldSize(args.posts, args.users),
                    replicas=2,
                    workers=args.workers_per_replica,
                    limit=args.limit,
                )
                with explore_cluster(settings) as cluster:
                    report |= rank_report(rank_runs(cluster, args))
            if "join" in args.parts:
                report |= join_report([join_run(p, address, args.smoke) for p in JOIN_PARALLELISMS])
    report["wall_s"] = round(time.monotonic() - started, 1)
    return report


def rank_report(runs: dict[str, RankRun]) -> dict[str, Any]:
    direct, one, two = runs["direct_1"], runs["balanced_1"], runs["balanced_2"]
    return {
        "rank_runs": {name: asdict(run) for name, run in runs.items()},
        "rank_2_vs_1_replicas": ratio(two.qps, one.qps),
        "rank_balancer_vs_direct": ratio(one.qps, direct.qps),
        "rank_p99_balancer_vs_direct": ratio(one.p99_ms, direct.p99_ms),
        # What one explore core serves when it does nothing else: 1 / CPU per call.
        "rank_qps_per_explore_core": ratio(1000.0, direct.explore_cpu_ms_per_call),
        "balancer_cpu_per_explore_cpu": ratio(
            one.balancer_cpu_ms_per_call, one.explore_cpu_ms_per_call
        ),
        "rank_errors": direct.errors + one.errors + two.errors,
    }


def join_report(runs: list[dict[str, Any]]) -> dict[str, Any]:
    by_parallelism = {f"parallelism_{run['parallelism']}": run for run in runs}
    one, two = by_parallelism["parallelism_1"], by_parallelism["parallelism_2"]
    return {
        "join_runs": by_parallelism,
        "join_2_vs_1_parallelism": ratio(two["join_items_per_s"], one["join_items_per_s"]),
        "decision_bytes_mean": one["decision_bytes_mean"],
        "example_bytes_mean": one["example_bytes_mean"],
    }


def print_report(report: dict[str, Any]) -> None:
    print(
        f"{report['cores']} cores, load average {report['load_average_1m_at_start']} at start; "
        f"{report['posts']:,} posts, {report['workers_per_replica']} worker(s) per replica, "
        f"{report['concurrency']} in flight, {report['seconds']:.0f} s per run ({report['client']})"
    )
    for name, run in report.get("rank_runs", {}).items():
        print(
            f"  {name:<11} {run['qps']:>8,.0f} Rank/s  p50 {run['p50_ms']:6.1f} ms  "
            f"p99 {run['p99_ms']:6.1f} ms  errors {run['errors']}  CPU/call: explore "
            f"{run['explore_cpu_ms_per_call']:.2f} ms, balancer "
            f"{run['balancer_cpu_ms_per_call']:.2f} ms, client "
            f"{run['client_cpu_ms_per_call']:.2f} ms ({run['cores_busy']:.2f} cores busy)"
        )
    if "rank_runs" in report:
        print(
            f"  2 replicas / 1: {report['rank_2_vs_1_replicas']:.3f}; balancer / direct: "
            f"{report['rank_balancer_vs_direct']:.3f} (p99 "
            f"{report['rank_p99_balancer_vs_direct']:.3f}); one explore core serves "
            f"{report['rank_qps_per_explore_core']:,.0f} Rank/s; HAProxy CPU = "
            f"{report['balancer_cpu_per_explore_cpu']:.3f} x explore's"
        )
    for name, run in report.get("join_runs", {}).items():
        print(
            f"  join {name}: {run['join_items_per_s']:>8,} items/s "
            f"({run['join_decisions_per_s']:,} decisions/s, {run['decisions']:,} decisions "
            f"of {run['items_per_decision']} items)"
        )
    if "join_runs" in report:
        print(f"  join parallelism 2 / 1: {report['join_2_vs_1_parallelism']:.3f}")
    print(
        "  on 2 cores these ratios show what a second replica or slot costs, not a "
        "speed-up: every piece already shares both cores"
    )


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--posts", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--workers-per-replica", type=int, default=1)
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0, help="per Rank measurement")
    parser.add_argument("--warmup-s", type=float, default=3.0, help="before each measurement")
    parser.add_argument("--concurrency", type=int, default=8, help="closed-loop calls in flight")
    parser.add_argument("--bootstrap", help="use this broker instead of starting one")
    parser.add_argument("--parts", nargs="+", choices=("rank", "join"), default=["rank", "join"])
    parser.add_argument(
        "--client",
        choices=("ghz", "python"),
        default="ghz" if ghz_available() else "python",
        help="load generator: ghz (compiled, default when installed) or Python gRPC clients",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="CI-sized: 5k posts, 3 s runs, the join at join_throughput's smoke sizes",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    if args.smoke:
        args.posts, args.users, args.seconds, args.warmup_s = 5_000, 500, 3.0, 1.0
    return args


def main() -> None:
    args = parse_arguments()
    report = run(args)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)


if __name__ == "__main__":
    main()
