"""A real in-process Ranking gRPC server over a small simulated world and the real broker."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from grpc_health.v1 import health

from feedrank.core.clock import ManualClock
from feedrank.core.settings import Settings, load_settings
from feedrank.explore.app import ServingState, explore_service
from feedrank.explore.grpc_service import build_server, set_serving
from feedrank.explore.service import ExploreService
from feedrank.stack.kafka_broker import KafkaBroker
from feedrank.v1 import ranking_pb2_grpc
from tests.support.kafka import TopicFactory
from tests.support.serving import world_serving_state

START_MS = 1_764_000_000_000


@dataclass
class RankingServer:
    service: ExploreService
    health: health.HealthServicer
    server: grpc.Server
    address: str
    settings: Settings
    decisions_topic: str

    def stub(self) -> ranking_pb2_grpc.RankingStub:
        return ranking_pb2_grpc.RankingStub(grpc.insecure_channel(self.address))


@pytest.fixture(scope="session")
def clock() -> ManualClock:
    return ManualClock(START_MS)


@pytest.fixture(scope="session")
def serving_state(clock: ManualClock) -> ServingState:
    settings = load_settings(world={"num_users": 2_000, "num_creators": 400, "num_posts": 20_000})
    return world_serving_state(settings, clock)


@pytest.fixture
def ranking_server(
    kafka: KafkaBroker, serving_state: ServingState, clock: ManualClock, new_topic: TopicFactory
) -> Iterator[RankingServer]:
    topic = new_topic("decisions", partitions=3)
    settings = load_settings(
        kafka={"bootstrap_servers": kafka.bootstrap},
        topics={"decisions": topic},
        explore={"max_message_bytes": 4096},
    )
    service = explore_service(settings, clock, serving_state)
    health_servicer = health.HealthServicer()
    server, port = build_server(
        service, settings.explore, clock, health_servicer, address="127.0.0.1:0", reuse_port=False
    )
    server.start()
    set_serving(health_servicer, serving=service.is_ready())
    try:
        yield RankingServer(service, health_servicer, server, f"127.0.0.1:{port}", settings, topic)
    finally:
        set_serving(health_servicer, serving=False)
        server.stop(grace=2).wait()
        service.close()
