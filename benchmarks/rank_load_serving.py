"""rank_load's serving runs: a worker pool under ghz (or Python clients), logging decisions
to Kafka or not, and the logging on/off comparison.

Logging on and off are compared in alternating rounds (off, on, off, on, ...), each
``on_off_seconds / rounds`` long, after a logged warm-up that is not counted. Both matter on a
shared box whose speed drifts between runs: a figure measured all at once before the
other took whatever the box did then (this VM's retrieval ceiling varied 1,406-2,500
queries/s between runs), and a broker started minutes before has compiled none of its
produce path, which a long-running one has (its JIT's CPU then went to the logged run
alone). The latency is measured after the last logged round, in its pool, at 80 % of
the logged saturation over all rounds.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

from benchmarks.load_client import LoadResult, closed_loop, ghz, ghz_available, open_loop
from benchmarks.process_usage import cpu_seconds, memory_mb
from feedrank.core.clock import SystemClock
from feedrank.core.settings import Settings
from feedrank.explore.app import ServingState, worker_backend_factory
from feedrank.explore.workers import PoolConfig, WorkerPool
from tests.support.kafka import free_port

LATENCY_LOAD = 0.8  # of the logged saturation

LatencyRate = Callable[[LoadResult], float]
"""The open-loop rate for a latency run, from the saturation just measured."""


@dataclass(frozen=True)
class Served:
    """Serving runs combined: the load results, memory, and CPU per Rank at saturation."""

    saturation: LoadResult
    latency: LoadResult | None
    pss_mb: float
    rss_mb: float
    worker_cpu_ms_per_rank: float
    broker_cpu_ms_per_rank: float


@dataclass(frozen=True)
class OnOff:
    """Rank with decision logging on and off, each over all rounds."""

    logged: Served  # with the latency at 80 % of its saturation
    unlogged: Served
    rounds: int
    warm_up_s: float


def logging_on_and_off(
    state: ServingState, settings: Settings, args: argparse.Namespace, *, broker_pid: int
) -> OnOff:
    """Saturation with logging off and on in ``args.rounds`` alternating pairs (each mode
    ``args.on_off_seconds`` in all) after ``args.warm_up`` seconds of logged load; then
    the latency (see the module docstring)."""
    rounds = max(args.rounds, 1)
    seconds = args.on_off_seconds / rounds

    def serve(log: bool, duration: float, latency_rate: LatencyRate | None = None) -> Served:
        return serve_and_load(
            state,
            settings,
            args,
            log_decisions=log,
            seconds=duration,
            latency_rate=latency_rate,
            broker_pid=broker_pid,
        )

    def latency_rate(last: LoadResult) -> float:
        """80 % of the logged saturation over the rounds so far and ``last``."""
        qps = [served.saturation.qps for served in logged] + [last.qps]
        return LATENCY_LOAD * sum(qps) / len(qps)

    if args.warm_up > 0:
        serve(True, args.warm_up)
    unlogged: list[Served] = []
    logged: list[Served] = []
    for number in range(rounds):
        unlogged.append(serve(False, seconds))
        last_round = number == rounds - 1
        logged.append(serve(True, seconds, latency_rate if last_round else None))
        off, on = unlogged[-1].saturation.qps, logged[-1].saturation.qps
        print(
            f"round {number + 1}/{rounds}: logging off {off:.1f} Rank/s, on {on:.1f} "
            f"({on / off if off else float('nan'):.3f})",
            file=sys.stderr,
            flush=True,
        )
    return OnOff(combined(logged), combined(unlogged), rounds, args.warm_up)


def combined(runs: list[Served]) -> Served:
    """Equally long runs as one: mean throughput, CPU per Rank over all Ranks, the last
    run's memory and latency."""
    total_qps = sum(run.saturation.qps for run in runs)

    def per_rank(cpu_ms: Callable[[Served], float]) -> float:
        if total_qps <= 0:
            return 0.0
        return sum(cpu_ms(run) * run.saturation.qps for run in runs) / total_qps

    last = runs[-1]
    saturation = LoadResult(
        qps=total_qps / len(runs),
        p50_ms=sorted(run.saturation.p50_ms for run in runs)[len(runs) // 2],
        p99_ms=max(run.saturation.p99_ms for run in runs),
        errors=sum(run.saturation.errors for run in runs),
        offered_qps=0.0,
    )
    return Served(
        saturation=saturation,
        latency=last.latency,
        pss_mb=last.pss_mb,
        rss_mb=last.rss_mb,
        worker_cpu_ms_per_rank=per_rank(lambda run: run.worker_cpu_ms_per_rank),
        broker_cpu_ms_per_rank=per_rank(lambda run: run.broker_cpu_ms_per_rank),
    )


def serve_and_load(
    state: ServingState,
    settings: Settings,
    args: argparse.Namespace,
    *,
    log_decisions: bool,
    seconds: float,
    latency_rate: LatencyRate | None,
    broker_pid: int,
) -> Served:
    """One worker pool at saturation for ``seconds``, then (with ``latency_rate``) at that
    rate, open loop; memory is read at the end."""
    clock = SystemClock()
    port = free_port()
    pool = WorkerPool(
        worker_backend_factory(settings, clock, state, log_decisions=log_decisions),
        settings.explore,
        clock,
        PoolConfig(address=f"127.0.0.1:{port}", workers=args.workers, metrics_address=None),
    )
    pool.start()
    try:
        address = f"127.0.0.1:{port}"
        workers = pool.worker_pids()
        before = cpu_seconds(workers), cpu_seconds([broker_pid])
        saturation = generate_load(address, args, seconds, rate=None)
        ranks = saturation.qps * seconds
        worker_cpu = 1000 * (cpu_seconds(workers) - before[0]) / max(ranks, 1.0)
        broker_cpu = 1000 * (cpu_seconds([broker_pid]) - before[1]) / max(ranks, 1.0)
        latency = (
            generate_load(address, args, args.seconds, rate=latency_rate(saturation))
            if latency_rate is not None
            else None
        )
        pss, rss = memory_mb([os.getpid(), *workers])
        return Served(saturation, latency, pss, rss, worker_cpu, broker_cpu)
    finally:
        pool.stop()


def generate_load(
    address: str, args: argparse.Namespace, seconds: float, *, rate: float | None
) -> LoadResult:
    """Saturation (closed loop, ``rate`` None) or ``rate`` calls/s (open loop)."""
    binary = ghz_available() if args.client == "ghz" else None
    if args.client == "ghz" and binary is None:
        raise SystemExit("ghz is not installed: run `make bench-tools` or pass --client python")
    if binary is not None:
        return ghz(
            binary,
            address,
            args.users,
            args.limit,
            seconds,
            concurrency=args.in_flight,
            rate=rate,
        )
    if rate is None:
        return closed_loop(address, args.users, args.limit, seconds, args.in_flight)
    return open_loop(address, args.users, args.limit, seconds, rate)
