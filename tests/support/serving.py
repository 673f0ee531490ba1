"""A worker backend behind a real gRPC Ranking server on 127.0.0.1, for tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc
from grpc_health.v1 import health

from feedrank.core.clock import Clock
from feedrank.core.settings import Settings
from feedrank.explore.app import ServingState, build_serving_state
from feedrank.explore.deadline import Deadline
from feedrank.explore.grpc_service import build_server
from feedrank.explore.queries import RankQuery, RankResult
from feedrank.explore.workers import WorkerBackend
from feedrank.simulate.world import generate_world, world_config
from feedrank.simulate.world.catalogue import catalogue_from_world
from feedrank.v1 import ranking_pb2_grpc


class EmptyFeed:
    """A ranking backend that answers every call with an empty feed on the stable arm:
    for tests of what happens around ranking (keys, TLS, metrics)."""

    def rank(self, query: RankQuery, deadline: Deadline) -> RankResult:
        return RankResult(decision_id="d1", model_version="v1", arm="stable", items=())

    def arm_of(self, user_id: str) -> str:
        return "stable"


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


def world_serving_state(settings: Settings, clock: Clock) -> ServingState:
    """Serving state over the simulated world of ``settings.world`` as of ``clock``'s now,
    its catalogue built in process (``feedrank serve`` replays the entity topics)."""
    world = generate_world(world_config(settings.world, clock.now_ms()))
    return build_serving_state(settings, clock, catalogue_from_world(world), show_progress=False)
