from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from feedrank.core.settings import load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("FEEDRANK_"):
            monkeypatch.delenv(key)


def test_defaults_follow_the_mission() -> None:
    settings = load_settings()
    assert settings.kafka.bootstrap == "127.0.0.1:9092"
    assert settings.topics.names() == [
        "feedrank.decisions",
        "feedrank.rewards",
        "feedrank.examples",
        "feedrank.metrics",
        "feedrank.dlq",
        "feedrank.posts",
        "feedrank.users",
        "feedrank.graph",
    ]
    assert (settings.ports.ranking_grpc, settings.ports.deploy_grpc) == (50051, 50052)
    assert settings.ports.explore_metrics == 9100
    assert settings.ports.streaming_metrics == 9103
    assert settings.time.reward_window == timedelta(days=14)
    assert settings.topics.event_retention_days >= 15


def test_environment_overrides_nested_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEEDRANK_KAFKA__BROKER_PORT", "19092")
    monkeypatch.setenv("FEEDRANK_TIME__REWARD_WINDOW", "30")
    settings = load_settings()
    assert settings.kafka.bootstrap == "127.0.0.1:19092"
    assert settings.time.reward_window_ms == 30_000


def test_flags_beat_environment_which_beats_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "feedrank.toml"
    config.write_text('[kafka]\nbroker_port = 1111\n\n[topics]\npartitions = 7\ndlq = "x.dlq"\n')
    monkeypatch.setenv("FEEDRANK_TOPICS__PARTITIONS", "5")
    settings = load_settings(config, kafka={"broker_port": 2222})
    assert settings.kafka.broker_port == 2222
    assert settings.topics.partitions == 5
    assert settings.topics.dlq == "x.dlq"


def test_config_file_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "feedrank.toml"
    config.write_text("[ports]\nranking_grpc = 6000\n")
    monkeypatch.setenv("FEEDRANK_CONFIG", str(config))
    assert load_settings().ports.ranking_grpc == 6000


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_settings(tmp_path / "absent.toml")


def test_unknown_keys_are_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "feedrank.toml"
    config.write_text("[kafka]\nbroker_prot = 1\n")
    with pytest.raises(ValidationError, match="broker_prot"):
        load_settings(config)
    monkeypatch.setenv("FEEDRANK_KAFKA__NOPE", "1")
    with pytest.raises(ValidationError, match=r"(?i)nope"):
        load_settings()


def test_unknown_top_level_environment_variable_is_rejected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FEEDRANK_KAFAK__BROKER_PORT", "1")
    with pytest.raises(ValueError, match="FEEDRANK_KAFAK__BROKER_PORT"):
        load_settings()


def test_reward_window_must_be_positive() -> None:
    with pytest.raises(ValidationError, match="reward_window must be positive"):
        load_settings(time={"reward_window": 0})


def test_event_retention_cannot_drop_below_the_reward_window_plus_a_day() -> None:
    with pytest.raises(ValidationError, match="event_retention_days"):
        load_settings(topics={"event_retention_days": 3})
