"""The root ``Settings``, how it is loaded, and how it travels to child processes.

``load_settings`` layers keyword overrides over ``FEEDRANK_*`` variables over a TOML
file; ``settings_to_environment`` turns settings back into those variables.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any, Self

from pydantic import SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from feedrank.core.settings.deploy import DeploySettings
from feedrank.core.settings.event_time import JoinSettings, TimeSettings
from feedrank.core.settings.explore import ExploreSettings
from feedrank.core.settings.infrastructure import (
    LOOPBACK,
    FlinkSettings,
    KafkaSettings,
    PathSettings,
    PortSettings,
    TopicSettings,
)
from feedrank.core.settings.learner import LearnerSettings
from feedrank.core.settings.security import TlsSettings
from feedrank.core.settings.topology import ClusterSettings
from feedrank.core.settings.world import WorldSettings

CONFIG_FILE_ENV = "FEEDRANK_CONFIG"


class Settings(BaseSettings):
    """Every setting of feedrank, grouped by concern."""

    model_config = SettingsConfigDict(
        env_prefix="FEEDRANK_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    ports: PortSettings = PortSettings()
    paths: PathSettings = PathSettings()
    flink: FlinkSettings = FlinkSettings()
    explore: ExploreSettings = ExploreSettings()
    world: WorldSettings = WorldSettings()
    join: JoinSettings = JoinSettings()
    time: TimeSettings = TimeSettings()
    deploy: DeploySettings = DeploySettings()
    learner: LearnerSettings = LearnerSettings()
    cluster: ClusterSettings = ClusterSettings()
    tls: TlsSettings = TlsSettings()

    @model_validator(mode="after")
    def _bootstrap_from_every_kafka_node(self) -> Self:
        """In the cluster topology, unless kafka.bootstrap_servers names the brokers, every
        client bootstraps from all local nodes, so none depends on one broker being up."""
        if self.cluster.topology != "cluster" or self.kafka.bootstrap_servers is not None:
            return self
        addresses = self.local_cluster_bootstrap()
        # The settings are frozen; this runs once, while they are being built.
        object.__setattr__(
            self, "kafka", self.kafka.model_copy(update={"bootstrap_servers": addresses})
        )
        return self

    def local_cluster_bootstrap(self) -> str:
        """The bootstrap string naming every node of the local Kafka cluster."""
        return ",".join(
            f"{LOOPBACK}:{self.cluster.kafka_node_port(self.kafka.broker_port, node_id)}"
            for node_id in range(1, self.cluster.kafka_brokers + 1)
        )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Flags beat the environment, which beats the file; no .env or secrets dirs.
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings from overrides, the environment and an optional TOML file.

    ``config_file`` takes precedence over ``FEEDRANK_CONFIG``. A missing file is an
    error rather than silently ignored.
    """
    _reject_unknown_environment()
    env_file = os.environ.get(CONFIG_FILE_ENV)
    path = config_file or (Path(env_file) if env_file else None)
    if path is None:
        return Settings(**overrides)
    if not path.is_file():
        raise FileNotFoundError(f"settings file {path} does not exist")

    class SettingsFromFile(Settings):
        model_config = SettingsConfigDict(**{**Settings.model_config, "toml_file": path})

    return SettingsFromFile(**overrides)


def _reject_unknown_environment() -> None:
    """Fail on a ``FEEDRANK_`` variable that names no setting (pydantic ignores those)."""
    known = {f"FEEDRANK_{name.upper()}" for name in Settings.model_fields} | {CONFIG_FILE_ENV}
    unknown = sorted(
        key for key in os.environ if key.startswith("FEEDRANK_") and key.split("__")[0] not in known
    )
    if unknown:
        groups = ", ".join(sorted(known - {CONFIG_FILE_ENV}))
        raise ValueError(
            f"unknown settings in the environment: {', '.join(unknown)}; "
            f"groups are {groups} (nested with '__', e.g. FEEDRANK_KAFKA__BROKER_PORT)"
        )


def settings_to_environment(settings: Settings) -> dict[str, str]:
    """``FEEDRANK_*`` variables that rebuild ``settings`` in a child process; secrets
    (the Kafka SASL password) in clear, as the child needs them: pass these only to a
    child's environment, never to a log."""
    environment: dict[str, str] = {}
    for group, values in settings.model_dump().items():
        _to_environment(f"FEEDRANK_{group.upper()}", values, environment)
    return environment


def child_environment(settings: Settings) -> dict[str, str]:
    """This process's environment with its ``FEEDRANK_*`` variables replaced by
    ``settings``: a ``feedrank`` child process sees exactly these settings."""
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("FEEDRANK_")
    }
    environment.update(settings_to_environment(settings))
    return environment


def _to_environment(prefix: str, values: dict[str, Any], environment: dict[str, str]) -> None:
    for name, value in values.items():
        key = f"{prefix}__{name.upper()}"
        if value is None:
            continue
        if isinstance(value, SecretStr):  # the child process needs the secret itself
            environment[key] = value.get_secret_value()
        elif isinstance(value, dict):  # a nested group, e.g. explore.rules
            _to_environment(key, value, environment)
        elif isinstance(value, (set, frozenset, list, tuple)):
            items = sorted(value) if isinstance(value, (set, frozenset)) else list(value)
            environment[key] = json.dumps(items)
        else:
            text = str(value.total_seconds() if isinstance(value, timedelta) else value)
            environment[key] = text
