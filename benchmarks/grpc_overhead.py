"""What gRPC itself costs a Rank call: grpcio's synchronous server against ``grpc.aio``.

    .venv/bin/python -m benchmarks.grpc_overhead            # 15 s per server
    .venv/bin/python -m benchmarks.grpc_overhead --json

Issue 23: a served Rank costs about 1.6 ms of worker CPU more than the same Rank in
process. This measures that share alone: a server process answers ``Ranking.Rank``
doing only what the servicer does around the pipeline (parse the request, build a
50-item response), under ghz's closed loop (8 calls in flight, one connection each),
once as explore serves today (the synchronous server, 4 handler threads) and once on
an asyncio server (``grpc.aio``, each call handled inline on its event loop). The
figure is the server process's CPU (``/proc``) per answered call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import time
from concurrent import futures
from dataclasses import asdict, dataclass
from typing import Any

import grpc

from benchmarks.load_client import LoadResult, closed_loop, ghz, ghz_available
from benchmarks.process_usage import cpu_seconds
from feedrank.v1 import ranking_pb2
from tests.support.kafka import free_port

METHOD = "feedrank.v1.Ranking"
ITEMS = 50


@dataclass(frozen=True)
class ServerCost:
    calls_per_s: float
    cpu_ms_per_call: float
    p50_ms: float


def respond(payload: bytes) -> ranking_pb2.RankResponse:
    """What the servicer does around the pipeline: parse, then a 50-item response."""
    request = ranking_pb2.RankRequest.FromString(payload)
    return ranking_pb2.RankResponse(
        decision_id="0" * 32,
        model_version="v0001",
        arm="main",
        items=[
            ranking_pb2.RankedItem(
                post_id=f"{request.user_id}-p{position}",
                position=position,
                score=0.5,
                propensity=0.9,
            )
            for position in range(ITEMS)
        ],
    )


def serve_sync(port: int, threads: int) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads))
    server.add_generic_rpc_handlers((_handlers(lambda payload, _context: respond(payload)),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


def serve_aio(port: int, _threads: int) -> None:
    async def rank(payload: bytes, _context: Any) -> ranking_pb2.RankResponse:
        return respond(payload)

    async def main() -> None:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((_handlers(rank),))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(main())


def _handlers(behaviour: Any) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        METHOD,
        {
            "Rank": grpc.unary_unary_rpc_method_handler(
                behaviour,
                request_deserializer=None,
                response_serializer=ranking_pb2.RankResponse.SerializeToString,
            )
        },
    )


def measure(server: Any, args: argparse.Namespace) -> ServerCost:
    port = free_port()
    process = multiprocessing.get_context("spawn").Process(
        target=server, args=(port, args.threads), daemon=True
    )
    process.start()
    try:
        address = f"127.0.0.1:{port}"
        grpc.channel_ready_future(grpc.insecure_channel(address)).result(timeout=30)
        load_for(args, address, min(2.0, args.seconds))  # warm up
        assert process.pid is not None
        before = cpu_seconds([process.pid])
        load = load_for(args, address, args.seconds)
        used = cpu_seconds([process.pid]) - before
        calls = load.qps * args.seconds
        return ServerCost(load.qps, 1000 * used / max(calls, 1.0), load.p50_ms)
    finally:
        process.terminate()
        process.join(timeout=10)


def load_for(args: argparse.Namespace, address: str, seconds: float) -> LoadResult:
    """A closed loop of ``args.in_flight`` calls for ``seconds``, from ghz or Python."""
    binary = ghz_available() if args.client == "ghz" else None
    if binary is not None:
        return ghz(binary, address, 1000, ITEMS, seconds, concurrency=args.in_flight, rate=None)
    if args.client == "ghz":
        raise SystemExit("ghz is not installed: run `make bench-tools` or pass --client python")
    return closed_loop(address, 1000, ITEMS, seconds, args.in_flight)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="per server")
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--threads", type=int, default=4, help="the sync server's handlers")
    parser.add_argument(
        "--client",
        choices=("ghz", "python"),
        default="ghz" if ghz_available() else "python",
        help="load generator: ghz (compiled, default when installed) or Python gRPC clients",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    costs = {"sync": measure(serve_sync, args), "aio": measure(serve_aio, args)}
    ratio = costs["aio"].cpu_ms_per_call / costs["sync"].cpu_ms_per_call
    if args.json:
        report = {name: asdict(cost) for name, cost in costs.items()}
        print(
            json.dumps(
                {**report, "aio_vs_sync_cpu": round(ratio, 3), "client": args.client}, indent=2
            )
        )
        return
    for name, cost in costs.items():
        print(
            f"{name:>4}: {cost.cpu_ms_per_call:.3f} ms of server CPU per call, "
            f"{cost.calls_per_s:,.0f} calls/s, p50 {cost.p50_ms:.2f} ms"
        )
    print(f"aio / sync CPU per call: {ratio:.2f} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
