"""Load generators for the Rank benchmark, run in spawned processes.

The benchmark's own process forks the gRPC workers, so it must never create a gRPC
channel itself (importing grpc is fine): every client lives in a freshly spawned
process.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from feedrank.v1 import ranking_pb2, ranking_pb2_grpc

CLIENT_PROCESSES = 2
PROTO_ROOT = Path(__file__).resolve().parents[1] / "proto"


@dataclass(frozen=True)
class LoadResult:
    qps: float  # completed OK calls per second
    p50_ms: float
    p99_ms: float
    errors: int
    offered_qps: float  # 0 for closed loop


def ghz_available() -> str | None:
    """The ghz binary (a compiled gRPC load generator), if installed (`make bench-tools`)."""
    return shutil.which("ghz") or next(
        (str(path) for path in [Path.home() / "go" / "bin" / "ghz"] if path.is_file()), None
    )


def ranking_protoset() -> Path:
    """A compiled descriptor set of ranking.proto for ghz.

    ghz cannot use Python's reflection service (it asks for the method symbol, which
    grpcio-reflection does not resolve) nor parse proto3 ``optional`` from source.
    """
    target = Path(tempfile.gettempdir()) / "feedrank-ranking.protoset"
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--descriptor_set_out={target}",
        "--include_imports",
        str(PROTO_ROOT / "feedrank" / "v1" / "ranking.proto"),
    ]
    subprocess.run(command, check=True, capture_output=True)
    return target


def ghz(
    binary: str,
    address: str,
    users: int,
    limit: int,
    seconds: float,
    *,
    concurrency: int,
    rate: float | None,
) -> LoadResult:
    """Run ghz against Ranking.Rank: closed loop (``rate`` None) or at ``rate`` calls/s.

    ghz spends microseconds per call, so the measured service keeps the cores.
    """
    command = [
        binary,
        "--insecure",
        "--protoset",
        str(ranking_protoset()),
        "--call",
        "feedrank.v1.Ranking/Rank",
        "--data",
        json.dumps({"user_id": "u{{randomInt 0 " + str(users) + "}}", "limit": limit}),
        "--concurrency",
        str(concurrency),
        "--connections",
        str(concurrency),  # one connection per call in flight: SO_REUSEPORT spreads them
        "--duration",
        f"{seconds}s",
        "--duration-stop",
        "wait",  # calls in flight at the end complete; they are not errors
        "--timeout",
        "5s",
        "--format",
        "json",
        "--cpus",
        "1",
    ]
    if rate is not None:
        command += ["--rps", str(max(int(rate), 1))]
    completed = subprocess.run([*command, address], capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"ghz failed: {completed.stdout[-2000:]} {completed.stderr[-2000:]}")
    report = json.loads(completed.stdout)
    latencies = {item["percentage"]: item["latency"] for item in report["latencyDistribution"]}
    errors = sum(
        count for code, count in report.get("statusCodeDistribution", {}).items() if code != "OK"
    )
    return LoadResult(
        qps=report["statusCodeDistribution"].get("OK", 0) / seconds,
        p50_ms=latencies[50] / 1e6,
        p99_ms=latencies[99] / 1e6,
        errors=errors,
        offered_qps=rate or 0.0,
    )


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
