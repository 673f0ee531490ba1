"""Fetch the JVM pieces of the local stack through Maven into a cache outside git.

* Kafka: ``org.apache.kafka:kafka_2.13`` with its runtime dependencies and a log4j2
  binding (``maven/kafka-broker.pom.xml``), into ``<cache>/kafka-<version>/``.
* Flink: the ``flink-sql-connector-kafka`` uber jar, into ``<cache>/flink/``.
* The join's Java engine, built from ``streaming/feedrank/streaming/engine``
  (``join_jar_build``), into ``<cache>/feedrank/``.

A directory counts as complete only once its marker file is written, so an
interrupted download is redone rather than half-used.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from feedrank.core.settings import Settings
from feedrank.stack.join_jar_build import build_join_jar
from feedrank.stack.maven import JarFetchError, run_maven
from feedrank.streaming.connector_jar import connector_jar_path
from feedrank.streaming.join_jar import join_jar_path

COMPLETE_MARKER = ".complete"
FLINK_CONNECTOR = "org.apache.flink:flink-sql-connector-kafka"


@dataclass(frozen=True)
class JarLocations:
    kafka_dir: Path
    flink_connector: Path
    join_engine: Path

    @classmethod
    def from_settings(cls, settings: Settings) -> JarLocations:
        cache = settings.paths.jar_cache.expanduser()
        return cls(
            kafka_dir=cache / f"kafka-{settings.kafka.kafka_version}",
            flink_connector=connector_jar_path(settings),
            join_engine=join_jar_path(settings),
        )

    def missing(self) -> list[str]:
        """Human-readable names of what still has to be fetched."""
        absent = []
        if not (self.kafka_dir / COMPLETE_MARKER).is_file():
            absent.append(f"Kafka broker jars ({self.kafka_dir})")
        if not self.flink_connector.is_file():
            absent.append(f"Flink Kafka connector ({self.flink_connector})")
        if not self.join_engine.is_file():
            absent.append(f"the join's Java engine ({self.join_engine})")
        return absent


def fetch_jars(settings: Settings) -> JarLocations:
    """Make sure every jar is in the cache, fetching what is missing."""
    locations = JarLocations.from_settings(settings)
    if not (locations.kafka_dir / COMPLETE_MARKER).is_file():
        _fetch_kafka(settings.kafka.kafka_version, locations.kafka_dir)
    if not locations.flink_connector.is_file():
        _fetch_flink_connector(settings.flink.connector_version, locations.flink_connector)
    build_join_jar(settings)
    return locations


def require_jars(settings: Settings) -> JarLocations:
    """The jar locations, or a clear error telling how to fetch them."""
    locations = JarLocations.from_settings(settings)
    if absent := locations.missing():
        raise JarFetchError(f"missing {'; '.join(absent)}: run `feedrank setup` first")
    return locations


def _fetch_kafka(version: str, target: Path) -> None:
    pom = resources.files("feedrank.stack") / "maven" / "kafka-broker.pom.xml"
    staging = Path(tempfile.mkdtemp(prefix="kafka-", dir=_ensure_parent(target)))
    try:
        with resources.as_file(pom) as pom_path:
            run_maven(
                "-f",
                str(pom_path),
                "dependency:copy-dependencies",
                f"-Dkafka.version={version}",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={staging}",
            )
        (staging / COMPLETE_MARKER).write_text(version + "\n")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _fetch_flink_connector(version: str, target: Path) -> None:
    staging = Path(tempfile.mkdtemp(prefix="flink-", dir=_ensure_parent(target)))
    try:
        run_maven(
            "dependency:copy",
            f"-Dartifact={FLINK_CONNECTOR}:{version}",
            f"-DoutputDirectory={staging}",
        )
        (staging / target.name).rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _ensure_parent(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    return target.parent
