"""The loop's Kafka path on a broker with SASL/SCRAM over TLS and ACLs.

One secured broker for the module: every role (app, explore, join, learner) has its own
SCRAM user, and each client is built the way its production code builds it. Decisions
are logged by explore's decision logger, rewards sent by ``feedrank.client``'s
``EventProducer`` as the app, the real Flink join reads both and writes labelled
examples in transactions as the join user, and the learner's Kafka source reads them.
Then the refusals: the app may not write decisions, and a wrong password does not
authenticate.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient

from feedrank.client import DeliveryFailed, EventProducer, TopicNames
from feedrank.core.kafka_clients import KafkaAccess, admin_config, idempotent_producer_config
from feedrank.core.kafka_topics import ensure_topics
from feedrank.core.settings import TopicSettings, load_settings
from feedrank.explore.decision_log import DecisionLogConfig, DecisionLogger
from feedrank.learners.sources import read_kafka_range
from feedrank.stack.broker_security import BrokerSecurity
from feedrank.stack.certificates import make_certificates
from feedrank.stack.jars import JarLocations
from feedrank.stack.kafka_acls import APP, EXPLORE, JOIN, LEARNER, ROLES, create_role_acls
from feedrank.stack.kafka_broker import BrokerConfig, KafkaBroker
from feedrank.stack.topics import standard_topics
from feedrank.streaming.flink_environment import FlinkJobOptions, create_stream_environment
from feedrank.streaming.join_job import JoinJobConfig, JoinTopics, build_join_job
from feedrank.streaming.join_logic import JoinConfig
from feedrank.v1 import events_pb2
from tests.support.kafka import free_port

T0 = 1_764_000_000_000
WINDOW_MS = 10_000


@dataclass(frozen=True)
class SecuredKafka:
    broker: KafkaBroker
    security: BrokerSecurity
    topics: TopicSettings

    def access(self, role: str) -> KafkaAccess:
        """How the role's processes reach the broker (their settings would say the same)."""
        return self.security.client_access(self.broker.bootstrap, role)


@pytest.fixture(scope="module")
def secured_kafka(
    tmp_path_factory: pytest.TempPathFactory, jars: JarLocations
) -> Iterator[SecuredKafka]:
    """A SASL_SSL broker with a user per role and the roles' ACLs, and the feedrank topics."""
    directory = tmp_path_factory.mktemp("secured-kafka")
    security = BrokerSecurity.from_certificates(
        make_certificates(directory / "certs"),
        admin_password=secrets.token_hex(12),
        users={role: secrets.token_hex(12) for role in ROLES},
    )
    config = BrokerConfig(
        data_dir=directory / "data",
        jar_dir=jars.kafka_dir,
        port=free_port(),
        controller_port=free_port(),
        security=security,
    )
    broker = KafkaBroker(config, log_file=directory / "kafka.log")
    process = broker.start(tie_to_parent=True)
    try:
        broker.wait_ready(process, timeout_s=90)
        topics = TopicSettings(partitions=1)
        admin = AdminClient(admin_config(broker.access))
        ensure_topics(admin, standard_topics(topics))
        create_role_acls(admin, topics, {role: role for role in ROLES})
        yield SecuredKafka(broker, security, topics)
    finally:
        process.stop()


def decision(index: int, time_ms: int) -> events_pb2.Decision:
    return events_pb2.Decision(
        decision_id=f"d{index}",
        user_id=f"u{index}",
        event_time_ms=time_ms,
        model_version="v1",
        arm="stable",
        items=[
            events_pb2.ShownItem(post_id=f"p{i}", position=i, score=0.5, propensity=0.5)
            for i in range(2)
        ],
    )


def test_the_loop_runs_with_each_role_on_its_own_credentials(
    secured_kafka: SecuredKafka, tmp_path: Path
) -> None:
    topics = secured_kafka.topics
    # Explore logs decisions as explore, the way its service builds the logger.
    logger = DecisionLogger(
        DecisionLogConfig(secured_kafka.access(EXPLORE), topics.decisions, delivery="acked")
    )
    try:
        assert logger.log(decision(0, T0))
        assert logger.log(decision(1, T0 + 1_000))
        # A later decision moves event time past every window, so the bounded job's
        # watermark closes them.
        assert logger.log(decision(99, T0 + 60_000))
    finally:
        assert logger.close() == 0
    # The app sends a reward as the app, through the client.
    with EventProducer(secured_kafka.access(APP)) as app:
        app.send_reward(decision_id="d0", post_id="p0", user_id="u0", type="like", ts_ms=T0 + 500)
        app.send_reward(
            decision_id="d99", post_id="p0", user_id="u99", type="view", ts_ms=T0 + 60_000
        )

    # The real Flink join, as the join user, exactly once (transactions of its prefix).
    settings = load_settings(paths={"state_dir": tmp_path})
    stream_env, table_env = create_stream_environment(
        settings,
        FlinkJobOptions(parallelism=1, checkpoint_interval_s=1.0),
        extra={"restart-strategy.type": "none"},  # fail the test, do not retry forever
    )
    run_id = uuid.uuid4().hex[:8]
    config = JoinJobConfig(
        bootstrap=secured_kafka.access(JOIN),
        topics=JoinTopics(topics.decisions, topics.rewards, topics.examples, topics.dlq),
        join=JoinConfig(
            reward_window_ms=WINDOW_MS,
            max_skew_ms=1_000,
            dangling_wait_ms=5_000,
            tombstone_ms=30_000,
        ),
        group_id=f"feedrank-join-{run_id}",
        transactional_id_prefix=f"feedrank-join-{run_id}",
        bounded=True,
        out_of_orderness_ms=1_000,
    )
    build_join_job(stream_env, table_env, config)
    stream_env.execute("secured-join-test")

    # The learner reads the labelled examples as the learner.
    examples = read_kafka_range(secured_kafka.access(LEARNER), topics.examples, timeout_s=60)
    by_item = {(e.decision_id, e.post_id): e.engaged for e in examples.examples}
    assert by_item == {
        ("d0", "p0"): True,
        ("d0", "p1"): False,
        ("d1", "p0"): False,
        ("d1", "p1"): False,
        ("d99", "p0"): False,
        ("d99", "p1"): False,
    }


def test_the_app_may_not_write_decisions(secured_kafka: SecuredKafka) -> None:
    misdirected = TopicNames(rewards=secured_kafka.topics.decisions)
    producer = EventProducer(
        secured_kafka.broker.bootstrap,
        security=secured_kafka.access(APP).security,
        topics=misdirected,
        producer_config={"message.timeout.ms": 10_000},
    )
    producer.send_reward(decision_id="d0", post_id="p0", user_id="u0", type="like", ts_ms=T0)
    with pytest.raises(DeliveryFailed, match="TOPIC_AUTHORIZATION_FAILED"):
        producer.flush()


def test_a_wrong_password_does_not_authenticate(secured_kafka: SecuredKafka) -> None:
    errors: list[KafkaError] = []
    impostor = secured_kafka.access(APP).as_user(APP, "not-the-password")
    producer = Producer(idempotent_producer_config(impostor, error_cb=errors.append))
    producer.produce(secured_kafka.topics.rewards, value=b"{}")
    deadline = time.monotonic() + 30
    while not errors and time.monotonic() < deadline:
        producer.poll(0.2)
    producer.purge()
    assert errors, "no error reported for a wrong password"
    assert errors[0].code() == KafkaError._AUTHENTICATION, errors[0]
    assert "Authentication failed" in errors[0].str()
