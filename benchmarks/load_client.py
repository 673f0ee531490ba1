"""Load generators for the Rank benchmark, run in spawned processes.

The benchmark's own process forks the gRPC workers, so it must never create a gRPC
channel itself (importing grpc is fine): every client lives in a freshly spawned
process.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np

from feedrank.v1 import ranking_pb2, ranking_pb2_grpc

CLIENT_PROCESSES = 2


@dataclass(frozen=True)
class LoadResult:
    qps: float  # completed OK calls per second
    p50_ms: float
    p99_ms: float
    errors: int
    offered_qps: float  # 0 for closed loop


def closed_loop(address: str, users: int, limit: int, seconds: float, in_flight: int) -> LoadResult:
    """Saturation: ``in_flight`` calls outstanding at all times."""
    per_process = max(in_flight // CLIENT_PROCESSES, 1)
    return _run(_closed_loop_client, (address, users, limit, seconds, per_process), seconds, 0.0)


def open_loop(address: str, users: int, limit: int, seconds: float, rate: float) -> LoadResult:
    """Poisson arrivals at ``rate`` calls/s, whatever the latency (no coordinated omission)."""
    per_process = rate / CLIENT_PROCESSES
    return _run(_open_loop_client, (address, users, limit, seconds, per_process), seconds, rate)


def _run(target: Any, arguments: tuple[Any, ...], seconds: float, offered: float) -> LoadResult:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    processes = [
        context.Process(target=target, args=(*arguments, index, queue))
        for index in range(CLIENT_PROCESSES)
    ]
    for process in processes:
        process.start()
    results = [queue.get(timeout=seconds + 120) for _ in processes]
    for process in processes:
        process.join()
    latencies = np.concatenate([np.asarray(latency) for latency, _ in results])
    errors = sum(error for _, error in results)
    if latencies.size == 0:
        return LoadResult(0.0, float("nan"), float("nan"), errors, offered)
    return LoadResult(
        qps=latencies.size / seconds,
        p50_ms=float(np.percentile(latencies, 50) * 1000),
        p99_ms=float(np.percentile(latencies, 99) * 1000),
        errors=errors,
        offered_qps=offered,
    )


def _request(users: int, limit: int, rng: random.Random) -> ranking_pb2.RankRequest:
    return ranking_pb2.RankRequest(user_id=f"u{rng.randrange(users)}", limit=limit)


def _closed_loop_client(
    address: str, users: int, limit: int, seconds: float, threads: int, index: int, queue: Any
) -> None:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def worker(seed: int) -> None:
        stub = ranking_pb2_grpc.RankingStub(grpc.insecure_channel(address))
        rng = random.Random(seed)
        while (started := time.perf_counter()) < deadline:
            try:
                stub.Rank(_request(users, limit, rng), timeout=5)
            except grpc.RpcError:
                with lock:
                    errors[0] += 1
                continue
            with lock:
                latencies.append(time.perf_counter() - started)

    pool = [threading.Thread(target=worker, args=(index * 1000 + t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    queue.put((latencies, errors[0]))


def _open_loop_client(
    address: str, users: int, limit: int, seconds: float, rate: float, index: int, queue: Any
) -> None:
    channel = grpc.insecure_channel(address)
    stub = ranking_pb2_grpc.RankingStub(channel)
    rng = random.Random(index)
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    pending: list[Any] = []

    def record(started: float) -> Any:
        def done(call: Any) -> None:
            with lock:
                if call.code() == grpc.StatusCode.OK:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors[0] += 1

        return done

    start = time.perf_counter()
    next_send = start
    while next_send < start + seconds:
        delay = next_send - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        call = stub.Rank.future(_request(users, limit, rng), timeout=5)
        call.add_done_callback(record(next_send))  # latency from the scheduled send time
        pending.append(call)
        next_send += rng.expovariate(rate)
    for call in pending:
        with contextlib.suppress(grpc.RpcError):
            call.result()
    time.sleep(0.1)
    queue.put((latencies, errors[0]))
