"""What queueing alone does to latency: an M/D/c queue at a measured service time.

The Rank load test measures saturation throughput and the latency at 80 % of it. How
much of that latency is queueing, not slow code? Poisson arrivals (the open-loop load
generator's) at the offered rate, ``c`` servers (the cores the workers share) and every
call taking exactly ``c / saturation`` seconds: the latency such a queue gives is the
floor for that throughput and load, however the work inside a call is done. At a fixed
load the queue's p99 scales with the service time, so a p99 target translates into the
service time, and the saturation throughput, it needs.
"""

from __future__ import annotations

import heapq
import random
import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class QueueLatency:
    mean_ms: float
    p50_ms: float
    p99_ms: float


def deterministic_service_latency(
    arrival_qps: float, service_s: float, servers: int, calls: int = 200_000, seed: int = 0
) -> QueueLatency:
    """Time in system (waiting + service) of ``calls`` Poisson arrivals at ``arrival_qps``
    served first come, first served by ``servers`` servers in ``service_s`` each (M/D/c,
    simulated). Needs a load below 1."""
    if arrival_qps <= 0 or service_s <= 0 or servers < 1 or calls < 100:
        raise ValueError("arrival rate, service time, servers and calls must be positive")
    if arrival_qps * service_s / servers >= 1:
        raise ValueError(f"load {arrival_qps * service_s / servers:.2f} >= 1: the queue grows")
    rng = random.Random(seed)
    free_at = [0.0] * servers  # when each server finishes its current call
    now, times = 0.0, []
    for _ in range(calls):
        now += rng.expovariate(arrival_qps)
        start = max(now, heapq.heappop(free_at))
        heapq.heappush(free_at, start + service_s)
        times.append(start + service_s - now)
    times.sort()
    return QueueLatency(
        mean_ms=statistics.fmean(times) * 1000,
        p50_ms=times[len(times) // 2] * 1000,
        p99_ms=times[int(len(times) * 0.99)] * 1000,
    )


def service_time_for_p99(
    target_p99_ms: float, load: float, servers: int, calls: int = 200_000
) -> float:
    """The service time (s) at which an M/D/c queue at ``load`` has ``target_p99_ms``."""
    unit = deterministic_service_latency(load * servers, 1.0, servers, calls)  # 1 s calls
    return target_p99_ms / unit.p99_ms
