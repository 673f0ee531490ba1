"""Automatic canary analysis over the real Kafka path: aggregates in, decisions out.

A small simulation writes 5-minute EngagementAggregate records for both arms to a
private ``feedrank.metrics`` topic, split by the live canary weight; the deploy
service reads them back through its Kafka feed and its controller judges each window
on a manual clock.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import Producer

from feedrank.core import codecs
from feedrank.core.clock import ManualClock
from feedrank.core.metrics_kinds import AGGREGATE_KIND, METRICS_KIND_HEADER
from feedrank.deploy.aggregates import KafkaAggregateFeed
from feedrank.deploy.server import DeployServer
from feedrank.registry import LocalModelRegistry
from feedrank.stack.kafka_broker import KafkaBroker
from tests.integration.deploy.conftest import START_MS, RunningDeploy, deploy_settings
from tests.support.deploy import WINDOW_MS, publish_versions, window_aggregate
from tests.support.kafka import TopicFactory

IMPRESSIONS_PER_WINDOW = 100_000
STABLE_RATES = (0.05, 0.002, 0.0006, 0.003)  # engagements, reports, blocks, hides
WORSE_RATES = (0.05, 0.006, 0.002, 0.003)  # three times the reports and blocks
BETTER_RATES = (0.06, 0.0015, 0.0005, 0.0025)


@pytest.fixture
def simulated_deploy(
    kafka: KafkaBroker, new_topic: TopicFactory, tmp_path: Path
) -> Iterator[tuple[RunningDeploy, str]]:
    topic = new_topic("metrics", partitions=1)
    clock = ManualClock(START_MS)
    settings = deploy_settings(tmp_path / "state")
    versions = publish_versions(LocalModelRegistry(settings.paths.registry, clock=clock), 3)
    server = DeployServer(settings, clock, port=0, analysis=False)
    server.start()
    feed = KafkaAggregateFeed(server.book, kafka.bootstrap, topic)
    feed.start()
    try:
        yield RunningDeploy(server, settings, clock, versions), topic
    finally:
        feed.stop()
        server.stop(grace_s=0.5)


def run_windows(
    deploy: RunningDeploy,
    producer: Producer,
    topic: str,
    canary_rates: tuple[float, ...],
    windows: int,
) -> int:
    """Simulate up to ``windows`` windows while the rollout is active; return how many ran."""
    rng = np.random.default_rng(17)
    control = deploy.server.control
    for window in range(windows):
        rollout = control.rollout()
        if not rollout.active:
            return window
        start = deploy.clock.now_ms()
        canary = round(IMPRESSIONS_PER_WINDOW * rollout.canary_weight)
        arms = (
            (rollout.canary_version, "canary", canary, canary_rates),
            (rollout.stable_version, "stable", IMPRESSIONS_PER_WINDOW - canary, STABLE_RATES),
        )
        for version, arm, impressions, rates in arms:
            aggregate = window_aggregate(
                rng,
                version=version,
                arm=arm,
                window_start_ms=start,
                impressions=impressions,
                rates=rates,  # type: ignore[arg-type]
            )
            producer.produce(
                topic,
                key=version.encode(),
                value=codecs.encode(aggregate),
                headers=[(METRICS_KIND_HEADER, AGGREGATE_KIND.encode())],
            )
        producer.flush(10)
        wait_until_read(deploy, rollout.canary_version, start, canary)
        deploy.clock.advance(WINDOW_MS)
        deploy.server.controller.tick()
    return windows


def wait_until_read(
    deploy: RunningDeploy, version: str, window_start_ms: int, impressions: int
) -> None:
    deadline = time.monotonic() + 15
    while deploy.server.book.totals(version, window_start_ms).impressions < impressions:
        assert time.monotonic() < deadline, "the deploy service did not read the aggregates"
        time.sleep(0.02)


def test_a_candidate_raising_reports_and_blocks_is_rolled_back(
    simulated_deploy: tuple[RunningDeploy, str], kafka: KafkaBroker
) -> None:
    deploy, topic = simulated_deploy
    first, second, _ = deploy.versions
    deploy.cli("start", first)
    deploy.cli("start", second, "--steps", "0.05,0.5,1")
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    windows = run_windows(deploy, producer, topic, WORSE_RATES, 30)
    code, output = deploy.cli("status", "--json")
    status = json.loads(output)
    assert code == 1
    assert status["phase"] == "rolled_back", status
    assert status["stable_version"] == first
    assert status["canary_weight"] == 0.0
    assert "significantly higher" in status["message"]
    assert windows <= 8  # judged within 40 simulated minutes at 5% canary traffic


def test_a_better_candidate_is_promoted(
    simulated_deploy: tuple[RunningDeploy, str], kafka: KafkaBroker
) -> None:
    deploy, topic = simulated_deploy
    first, second, _ = deploy.versions
    deploy.cli("start", first)
    deploy.cli("start", second, "--steps", "0.05,0.5,1")
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    windows = run_windows(deploy, producer, topic, BETTER_RATES, 30)
    code, output = deploy.cli("status", "--json")
    status = json.loads(output)
    assert code == 0
    assert (status["phase"], status["stable_version"]) == ("promoted", second), status
    assert windows < 30
    phases = [entry["phase"] for entry in json.loads(deploy.cli("history", "--json")[1])]
    assert phases[-1] == "promoted"
