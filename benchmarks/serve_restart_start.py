"""One start of ``feedrank serve``: its command and environment, timed to SERVING and measured.

:func:`start_once` spawns it, waits for gRPC health SERVING and every worker, calls Rank
on each worker, samples the memory and stops it with SIGTERM; :class:`Start` holds the
figures and the start-up phases.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from benchmarks.progress import progress
from benchmarks.serve_restart_process import (
    HEALTH_POLL_S,
    PSS_SAMPLE_S,
    ServeProcess,
    serve_process,
)
from feedrank.v1 import ranking_pb2, ranking_pb2_grpc

SERVICE = "feedrank.v1.Ranking"
RANK_USER = "u-0"
GB = 1e9

say = progress("serve-restart")


@dataclass(frozen=True)
class Start:
    """One start of ``feedrank serve``: seconds from spawn, phases as durations."""

    serving_s: float  # spawn -> health SERVING (the first worker serves)
    all_workers_s: float  # spawn -> "serving Ranking on" (every worker serves)
    imports_s: float | None  # spawn -> "replaying the catalogue" (interpreter, imports)
    replay_s: float | None  # -> "catalogue: N posts" (consume, decode, apply)
    build_s: float | None  # -> the first worker forked (post tower, index build)
    workers_s: float | None  # -> SERVING (fork, backend, gRPC server)
    first_rank_ms: float
    rank_items: int  # the fewest items a Rank call returned
    peak_pss_gb: float  # during start-up, every 0.5 s
    pss_gb: float  # once serving, after the Rank calls
    stop_s: float  # SIGTERM -> exited


def wait_serving(address: str, server: ServeProcess, timeout_s: float) -> float:
    """Seconds from spawn until health says SERVING (a fresh channel per probe: a kept
    channel's reconnect back-off would hide the moment the port opens)."""
    request = health_pb2.HealthCheckRequest(service=SERVICE)
    serving = health_pb2.HealthCheckResponse.SERVING
    while server.since_spawn() < timeout_s:
        server.check_running()
        with grpc.insecure_channel(address) as channel:
            stub: Any = health_pb2_grpc.HealthStub(channel)
            try:
                if stub.Check(request, timeout=1.0).status == serving:
                    return server.since_spawn()
            except grpc.RpcError:
                pass
        time.sleep(HEALTH_POLL_S)
    raise TimeoutError(f"feedrank serve was not SERVING within {timeout_s} s")


def rank_items(address: str, calls: int) -> tuple[float, int]:
    """``calls`` Rank calls on fresh channels (spread over the workers): the first one's
    latency in ms and the fewest items any returned (RuntimeError when one is empty)."""
    fewest, first_ms = sys.maxsize, 0.0
    for call in range(calls):
        with grpc.insecure_channel(address) as channel:
            stub: Any = ranking_pb2_grpc.RankingStub(channel)
            started = time.perf_counter()
            response = stub.Rank(ranking_pb2.RankRequest(user_id=RANK_USER, limit=10), timeout=30)
            if call == 0:
                first_ms = 1000 * (time.perf_counter() - started)
        fewest = min(fewest, len(response.items))
    if fewest == 0:
        raise RuntimeError(f"a Rank call for {RANK_USER} returned no items")
    return first_ms, fewest


def between(start: float | None, end: float | None) -> float | None:
    """Seconds from ``start`` to ``end``; 0 when the process-tree poll (every
    ``serve_restart_process.TREE_POLL_S``) saw the fork only after ``end`` (workers
    ready within one poll)."""
    return None if start is None or end is None else round(max(end - start, 0.0), 2)


def start_once(
    command: list[str], env: dict[str, str], address: str, args: argparse.Namespace, label: str
) -> Start:
    """Start ``feedrank serve``, wait for SERVING, call Rank, measure, stop it."""
    say(f"{label}: starting feedrank serve ({args.workers} workers)")
    with serve_process(command, env) as server:
        serving_s = wait_serving(address, server, args.start_timeout_s)
        all_workers_s = server.wait_line("serving Ranking on", args.start_timeout_s)
        server.served()
        say(f"{label}: SERVING after {serving_s:.1f} s, every worker after {all_workers_s:.1f} s")
        first_ms, items = rank_items(address, 2 * args.workers)
        pss = 0
        for _ in range(3):  # the highest of three samples over a second
            pss = max(pss, server.pss())
            time.sleep(PSS_SAMPLE_S / 2)
        stop_s = server.terminate()
        imports = server.line_s("replaying the catalogue")
        replayed = server.line_s("catalogue:")
        return Start(
            serving_s=round(serving_s, 2),
            all_workers_s=round(all_workers_s, 2),
            imports_s=None if imports is None else round(imports, 2),
            replay_s=between(imports, replayed),
            build_s=between(replayed, server.first_child_s),
            workers_s=between(server.first_child_s, serving_s),
            first_rank_ms=round(first_ms, 1),
            rank_items=items,
            peak_pss_gb=round(server.peak_pss / GB, 3),
            pss_gb=round(pss / GB, 3),
            stop_s=round(stop_s, 2),
        )


def serve_command(workers: int, port: int, metrics_port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "feedrank.cli.main",
        "serve",
        "--workers",
        str(workers),
        "--port",
        str(port),
        "--metrics-port",
        str(metrics_port),
        "--no-log-decisions",
    ]


def serve_env(address: str, names: dict[str, str], state_dir: Path) -> dict[str, str]:
    """This environment without FEEDRANK_* settings, pointed at the benchmark's topics."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("FEEDRANK_")}
    env.update(
        FEEDRANK_KAFKA__BOOTSTRAP_SERVERS=address,
        FEEDRANK_TOPICS__POSTS=names["posts"],
        FEEDRANK_TOPICS__USERS=names["users"],
        FEEDRANK_TOPICS__GRAPH=names["graph"],
        FEEDRANK_TOPICS__DLQ=names["dlq"],
        FEEDRANK_PATHS__STATE_DIR=str(state_dir),
        FEEDRANK_EXPLORE__FEATURE_UPDATES="false",
        PYTHONUNBUFFERED="1",  # its lines arrive when printed: the phases are timed by them
        PYTHONIOENCODING="utf-8",
        COLUMNS="200",  # rich wraps at 80 columns in a pipe
        NO_COLOR="1",
    )
    return env
