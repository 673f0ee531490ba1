"""A worker backend behind a real gRPC Ranking server on 127.0.0.1, for tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc
from grpc_health.v1 import health

from feedrank.core.clock import Clock
from feedrank.core.settings import Settings
from feedrank.explore.grpc_service import build_server
from feedrank.explore.workers import WorkerBackend
from feedrank.v1 import ranking_pb2_grpc


@contextmanager
def served(
    backend: WorkerBackend, settings: Settings, clock: Clock
) -> Iterator[ranking_pb2_grpc.RankingStub]:
    """A stub of ``backend`` served over gRPC; the server stops, then the backend closes."""
    server, port = build_server(
        backend,
        settings.explore,
        clock,
        health.HealthServicer(),
        address="127.0.0.1:0",
        reuse_port=False,
    )
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield ranking_pb2_grpc.RankingStub(channel)
    finally:
        channel.close()
        server.stop(grace=1).wait()
        backend.close()
