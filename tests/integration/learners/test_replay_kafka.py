"""Replay into a real broker: bad rows are skipped, the good ones arrive as decisions and
rewards that the shared codec accepts; evaluation reads examples back from Kafka."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from typer.testing import CliRunner

from feedrank.cli.main import app
from feedrank.core import codecs
from feedrank.learners.replay import ReplayProducer, ReplayTopics, read_replay, to_events
from feedrank.stack.kafka_broker import KafkaBroker
from feedrank.v1 import events_pb2
from tests.support.kafka import CommittedReader, TopicFactory

TS = 1_764_000_000_000
runner = CliRunner()


def _replay_file(tmp_path: Path) -> Path:
    path = tmp_path / "logs.csv"
    path.write_text(
        "decision_id,timestamp,user_id,post_id,position,propensity,reward,reward_type,country\n"
        f"d1,{TS},u1,p1,0,0.5,1,like,US\n"
        f"d1,{TS},u1,p2,1,0.25,0,,US\n"
        f"d2,{TS + 1000},u2,p3,0,0.9,30,dwell,DE\n"
        f"d3,{TS},u3,p4,0,-0.5,1,,FR\n"  # line 5: negative propensity
        f"d4,not-a-time,u4,p5,0,0.5,1,,FR\n"  # line 6: bad timestamp
        f"d5,{TS},,p6,0,0.5,1,,FR\n"  # line 7: missing user id
        f"d6,{TS},u6,p7,0,0.5,lots,,FR\n"  # line 8: non-numeric reward
        f"d7,{TS},u7,p8,0,0.5,0,,GB\n"
    )
    return path


def test_replayed_decisions_and_rewards_arrive_and_decode(
    kafka: KafkaBroker, new_topic: TopicFactory, consume: CommittedReader, tmp_path: Path
) -> None:
    topics = ReplayTopics(decisions=new_topic("decisions"), rewards=new_topic("rewards"))
    log = read_replay(_replay_file(tmp_path))
    assert [(error.line, error.column) for error in log.errors] == [
        (5, "propensity"),
        (6, "timestamp"),
        (7, "user_id"),
        (8, "reward"),
    ]
    producer = ReplayProducer(kafka.bootstrap, topics)
    for decision in log.decisions:
        producer.send(to_events(decision))
    report = producer.flush(timeout_s=30)
    assert (report.decisions, report.rewards, report.failed) == (3, 2, 0)

    decisions = {
        event.decision_id: event
        for event in (codecs.decode_decision(m.value()) for m in consume(topics.decisions, 3))
    }
    assert sorted(decisions) == ["d1", "d2", "d7"]
    assert [(i.post_id, i.position, i.propensity) for i in decisions["d1"].items] == [
        ("p1", 0, 0.5),
        ("p2", 1, 0.25),
    ]
    assert decisions["d2"].event_time_ms == TS + 1000
    assert dict(decisions["d7"].user_features.categorical) == {"country": "GB"}

    records = consume(topics.rewards, 2)
    assert {m.key() for m in records} == {b"u1", b"u2"}
    rewards = sorted((codecs.decode_reward(m.value()) for m in records), key=lambda r: r.post_id)
    assert [(r.decision_id, r.post_id, r.type, codecs.reward_value(r)) for r in rewards] == [
        ("d1", "p1", events_pb2.REWARD_TYPE_LIKE, 1.0),
        ("d2", "p3", events_pb2.REWARD_TYPE_DWELL, 30.0),
    ]


@pytest.fixture
def topic_prefix(kafka: KafkaBroker) -> Iterator[str]:
    prefix = f"test.replay.{uuid.uuid4().hex[:8]}."
    yield prefix
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    names = [f"{prefix}decisions", f"{prefix}rewards"]
    for future in admin.delete_topics(names, operation_timeout=30).values():
        future.result(timeout=30)


def test_the_replay_command_creates_prefixed_topics_and_loads_the_good_rows(
    kafka: KafkaBroker, topic_prefix: str, consume: CommittedReader, tmp_path: Path
) -> None:
    result = runner.invoke(
        app,
        ["replay", str(_replay_file(tmp_path)), "--topic-prefix", topic_prefix],
        env={"FEEDRANK_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap},
    )
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "rows loaded │ 4" in output
    assert "rows rejected │ 4" in output
    assert "delivery failures │ 0" in output
    assert len(consume(f"{topic_prefix}decisions", 3)) == 3
    assert len(consume(f"{topic_prefix}rewards", 2)) == 2


def test_evaluate_reads_labelled_examples_from_kafka(
    kafka: KafkaBroker, new_topic: TopicFactory, tmp_path: Path
) -> None:
    topic = new_topic("examples", partitions=2)
    producer = Producer({"bootstrap.servers": kafka.bootstrap})
    target_lines = ["decision_id,position,target_probability"]
    for decision in range(50):
        for position in range(2):
            example = events_pb2.LabelledExample(
                decision_id=f"d{decision}",
                user_id=f"u{decision}",
                post_id=f"p{position}",
                position=position,
                propensity=0.5,
                reward=float((decision + position) % 3 == 0),
            )
            producer.produce(topic, key=example.user_id.encode(), value=codecs.encode(example))
            target_lines.append(f"d{decision},{position},0.5")
    assert producer.flush(30) == 0
    target = tmp_path / "target.csv"
    target.write_text("\n".join(target_lines) + "\n")

    result = runner.invoke(
        app,
        [
            "evaluate",
            "--from-kafka",
            "--examples-topic",
            topic,
            "--target-probabilities",
            str(target),
            "--json",
        ],
        env={"FEEDRANK_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap},
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["logging"]["rows"] == 100
    assert document["logging"]["decisions"] == 50
    # The target equals the logging policy, so every estimator gives the logged mean.
    for estimate in document["estimates"]:
        assert estimate["value"] == pytest.approx(document["logging"]["value"])
