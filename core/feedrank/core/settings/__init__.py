"""Typed settings: the one place for ports, topics, paths, the reward window and the clock.

Values come, highest priority first, from keyword overrides (CLI flags), environment
variables prefixed ``FEEDRANK_`` (nested groups joined by ``__``, e.g.
``FEEDRANK_KAFKA__BROKER_PORT=19092``), a TOML file (``--config`` or
``FEEDRANK_CONFIG``) and the defaults below. Unknown keys are rejected everywhere.

The groups live by concern: ``infrastructure`` (Kafka, topics, ports, paths, Flink),
``explore`` (the Rank service, its rules and cold start), ``world`` (the simulated
world), ``event_time`` (the reward window, the clock, the join), ``learner``,
``deploy``, ``security`` (TLS); ``loading`` holds the root ``Settings`` and how it is loaded.
"""

from __future__ import annotations

from feedrank.core.settings.deploy import DeploySettings
from feedrank.core.settings.event_time import JoinSettings, TimeSettings
from feedrank.core.settings.explore import (
    RULE_FILTERS,
    ColdStartSettings,
    ExploreSettings,
    RuleSettings,
)
from feedrank.core.settings.infrastructure import (
    LOOPBACK,
    FlinkSettings,
    KafkaSettings,
    PathSettings,
    PortSettings,
    TopicSettings,
)
from feedrank.core.settings.learner import LearnerSettings
from feedrank.core.settings.loading import (
    CONFIG_FILE_ENV,
    Settings,
    child_environment,
    load_settings,
    settings_to_environment,
)
from feedrank.core.settings.security import TlsSettings
from feedrank.core.settings.world import WorldSettings

__all__ = [
    "CONFIG_FILE_ENV",
    "LOOPBACK",
    "RULE_FILTERS",
    "ColdStartSettings",
    "DeploySettings",
    "ExploreSettings",
    "FlinkSettings",
    "JoinSettings",
    "KafkaSettings",
    "LearnerSettings",
    "PathSettings",
    "PortSettings",
    "RuleSettings",
    "Settings",
    "TimeSettings",
    "TlsSettings",
    "TopicSettings",
    "WorldSettings",
    "child_environment",
    "load_settings",
    "settings_to_environment",
]
