"""Session fixtures for integration tests: a real KRaft broker and per-test topics.

Ports are picked free, readiness is probed (never slept for), and everything started
here is stopped at the end of the session even when tests fail; the broker is also
tied to the pytest process, so a killed run leaves no JVM behind.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from confluent_kafka.admin import AdminClient

from feedrank.core.settings import Settings, load_settings
from feedrank.stack.jars import JarLocations, fetch_jars
from feedrank.stack.kafka_broker import BrokerConfig, KafkaBroker
from tests.support.kafka import CommittedReader, TopicFactory, free_port


@pytest.fixture(scope="session")
def jars() -> JarLocations:
    return fetch_jars(load_settings())


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory, jars: JarLocations) -> Iterator[KafkaBroker]:
    data_dir = tmp_path_factory.mktemp("kafka")
    config = BrokerConfig(
        data_dir=data_dir, jar_dir=jars.kafka_dir, port=free_port(), controller_port=free_port()
    )
    broker = KafkaBroker(config, log_file=data_dir / "kafka.log")
    process = broker.start(tie_to_parent=True)
    try:
        broker.wait_ready(process, timeout_s=90)
        yield broker
    finally:
        process.stop()


@pytest.fixture(scope="session")
def settings_for_kafka(kafka: KafkaBroker, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings whose clients talk to the session broker."""
    return load_settings(
        kafka={"bootstrap_servers": kafka.bootstrap},
        paths={"state_dir": tmp_path_factory.mktemp("state")},
    )


@pytest.fixture
def kafka_admin(kafka: KafkaBroker) -> AdminClient:
    return AdminClient({"bootstrap.servers": kafka.bootstrap})


@pytest.fixture
def new_topic(kafka_admin: AdminClient, request: pytest.FixtureRequest) -> Iterator[TopicFactory]:
    """Create topics private to one test; they are deleted afterwards."""
    factory = TopicFactory(kafka_admin, request.node.name)
    yield factory
    factory.delete_all()


@pytest.fixture
def consume(kafka: KafkaBroker) -> CommittedReader:
    """Read records from a topic as a read-committed consumer."""
    return CommittedReader(kafka.bootstrap)
