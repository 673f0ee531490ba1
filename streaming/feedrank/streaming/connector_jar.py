"""Where the Flink Kafka connector jar lives in the jar cache, without importing PyFlink.

``feedrank setup`` fetches the jar there (``feedrank.stack.jars``) and every job's
environment ships it (``feedrank.streaming.flink_environment``); both read its path here,
so the stack's commands do not pay for importing PyFlink.
"""

from __future__ import annotations

from pathlib import Path

from feedrank.core.settings import Settings


class MissingConnectorJarError(RuntimeError):
    """The Kafka connector jar a job needs is not in the jar cache."""


def connector_jar_path(settings: Settings) -> Path:
    """Where the jar cache keeps the Kafka connector of ``flink.connector_version``."""
    cache = settings.paths.jar_cache.expanduser()
    version = settings.flink.connector_version
    return cache / "flink" / f"flink-sql-connector-kafka-{version}.jar"


def require_connector_jar(settings: Settings) -> Path:
    """The connector jar's path, or a clear error telling how to fetch it."""
    jar = connector_jar_path(settings)
    if not jar.is_file():
        raise MissingConnectorJarError(
            f"missing Flink Kafka connector ({jar}): run `feedrank setup` first"
        )
    return jar
