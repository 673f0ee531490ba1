from __future__ import annotations

from pathlib import Path

from feedrank.stack.kafka_broker import BrokerConfig


def parse(properties: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in properties.splitlines() if line)


def test_single_broker_internal_topics_use_replication_factor_one(tmp_path: Path) -> None:
    config = BrokerConfig(data_dir=tmp_path, jar_dir=tmp_path, port=19092, controller_port=19093)
    properties = parse(config.server_properties())
    assert properties["process.roles"] == "broker,controller"
    assert properties["offsets.topic.replication.factor"] == "1"
    assert properties["transaction.state.log.replication.factor"] == "1"
    assert properties["transaction.state.log.min.isr"] == "1"
    assert properties["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert properties["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert properties["auto.create.topics.enable"] == "false"
    assert properties["log.dirs"] == str((tmp_path / "logs").resolve())
    # Flink's exactly-once sink asks for 10-minute transactions; the broker must allow it.
    assert int(properties["transaction.max.timeout.ms"]) >= 600_000
