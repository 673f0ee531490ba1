"""The simulator against a real Ranking gRPC server and a real broker: feeds are served,
rewards reach Kafka when their simulated time comes, and engagement is tallied per arm."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health

from feedrank.core import codecs
from feedrank.core.clock import AcceleratedClock, ManualClock
from feedrank.core.settings import load_settings
from feedrank.core.time_units import HOUR_MS
from feedrank.explore.app import explore_service
from feedrank.explore.grpc_service import build_server, set_serving
from feedrank.simulate.driver import Simulation, SimulationConfig
from feedrank.simulate.engagement import (
    ORACLE_ARM,
    RANDOM_ARM,
    REPEATING_ORACLE_ARM,
    EngagementLedger,
)
from feedrank.simulate.rank_client import GrpcRankClient
from feedrank.simulate.report import write_csv, write_plot
from feedrank.simulate.reward_sink import KafkaRewardSink
from feedrank.simulate.world import BehaviourModel, WorldConfig, generate_world
from feedrank.stack.kafka_broker import KafkaBroker
from tests.support.kafka import CommittedReader, TopicFactory
from tests.support.serving import world_serving_state

START_MS = 1_764_000_000_000
WORLD = {"num_users": 500, "num_creators": 100, "num_posts": 4_000, "seed": 5}
WORLD_CONFIG = WorldConfig(
    num_users=500, num_creators=100, num_posts=4_000, seed=5, start_ms=START_MS
)


@pytest.fixture
def ranking_address(kafka: KafkaBroker, new_topic: TopicFactory) -> Iterator[str]:
    settings = load_settings(
        kafka={"bootstrap_servers": kafka.bootstrap},
        topics={"decisions": new_topic("decisions")},
        world=WORLD,
    )
    clock = ManualClock(START_MS)
    state = world_serving_state(settings, clock)
    service = explore_service(settings, clock, state)
    health_servicer = health.HealthServicer()
    server, port = build_server(
        service, settings.explore, clock, health_servicer, address="127.0.0.1:0", reuse_port=False
    )
    server.start()
    set_serving(health_servicer, serving=True)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=1).wait()
        service.close()


def test_simulated_users_are_served_and_their_rewards_reach_kafka(
    kafka: KafkaBroker,
    new_topic: TopicFactory,
    ranking_address: str,
    consume: CommittedReader,
    tmp_path: Path,
) -> None:
    rewards_topic = new_topic("rewards")
    world = generate_world(WORLD_CONFIG)
    client = GrpcRankClient(ranking_address)
    client.wait_ready(timeout_s=10)
    sink = KafkaRewardSink(kafka.bootstrap, rewards_topic)
    ledger = EngagementLedger(bucket_ms=HOUR_MS, reward_window_ms=14 * 24 * HOUR_MS)
    # Four simulated days in four seconds: most rewards (seconds to days later) fall due.
    clock = AcceleratedClock(START_MS, speed=86_400)
    simulation = Simulation(
        SimulationConfig(duration_s=4, requests_per_s=40, request_threads=2, baseline_every=2),
        world=world,
        behaviour=BehaviourModel(world, seed=1),
        client=client,
        sink=sink,
        clock=clock,
        ledger=ledger,
    )
    stats = simulation.run()
    assert sink.close() == 0
    client.close()

    assert stats.failures == {}
    assert stats.requests >= 40
    assert stats.rewards_delivered > 0
    records = consume(rewards_topic, stats.rewards_delivered, timeout_s=30)
    rewards = [codecs.decode_reward(record.value(), record.headers()) for record in records]
    assert len(rewards) == stats.rewards_delivered
    assert all(START_MS <= r.ts_ms <= clock.now_ms() for r in rewards)
    assert {r.user_id for r in rewards} <= {f"u{i}" for i in range(WORLD["num_users"])}

    totals = ledger.totals()
    served = [arm for arm in totals if arm not in {RANDOM_ARM, ORACLE_ARM, REPEATING_ORACLE_ARM}]
    assert len(served) == 1  # one model, one arm
    # Every feed asks for 20 posts; one can come back shorter when its user has already
    # been served most of what this small world has for them (served posts are skipped).
    assert stats.requests * 20 * 0.95 <= totals[served[0]].impressions <= stats.requests * 20
    assert totals[ORACLE_ARM].rate > totals[RANDOM_ARM].rate
    paired = ledger.paired_versus_oracle()  # the served feeds beside the baselines' ...
    assert 0.0 < paired[RANDOM_ARM] < paired[served[0]] <= 1.0  # ... for the same users
    assert paired[REPEATING_ORACLE_ARM] >= 1.0  # free to repeat: a superset to choose from
    assert totals[served[0]].expected > 0

    write_csv(ledger, tmp_path / "engagement.csv")
    write_plot(ledger, tmp_path / "engagement.png", "test")
    assert (tmp_path / "engagement.png").stat().st_size > 1_000
    assert len((tmp_path / "engagement.csv").read_text().splitlines()) > 3


def test_rank_failures_are_counted_not_raised(tmp_path: Path) -> None:
    world = generate_world(WORLD_CONFIG)
    client = GrpcRankClient("127.0.0.1:1", timeout_s=0.2)  # nobody listens there
    simulation = Simulation(
        SimulationConfig(duration_s=1, requests_per_s=10, request_threads=1),
        world=world,
        behaviour=BehaviourModel(world, seed=1),
        client=client,
        sink=lambda rewards: None,
        clock=ManualClock(START_MS),
        ledger=EngagementLedger(bucket_ms=HOUR_MS, reward_window_ms=HOUR_MS),
    )
    stats = simulation.run()
    assert stats.requests == 0
    assert stats.failures[grpc.StatusCode.UNAVAILABLE.name] >= 5
