"""What the freshness benchmark watches: positives on the examples topic, registry versions.

Two daemon threads: :class:`ExampleWatcher` notes when each positive example becomes
visible to a read-committed consumer (and its partition and offset), and
:class:`RegistryWatcher` notes when each registry version appears and which examples
offsets it covers; :func:`first_covering` joins the two.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from feedrank.core import codecs
from feedrank.registry import LocalModelRegistry, RegistryError
from feedrank.registry.manifest import VERSION_PATTERN
from feedrank.v1 import events_pb2

REGISTRY_POLL_S = 0.05


@dataclass(frozen=True)
class SeenExample:
    partition: int
    offset: int
    seen_s: float  # time.monotonic() when it became visible read-committed


class ExampleWatcher(threading.Thread):
    """Reads the examples topic read-committed from the start; notes every positive."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        super().__init__(name="example-watcher", daemon=True)
        self.positives: dict[tuple[str, str], SeenExample] = {}
        self.examples = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-freshness-{uuid.uuid4().hex}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        self.consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)]
        )

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                for record in self.consumer.consume(500, timeout=0.05):
                    now, value = time.monotonic(), record.value()
                    if record.error() is not None or value is None:
                        continue
                    example = codecs.decode(events_pb2.LabelledExample, value)
                    with self.lock:
                        self.examples += 1
                        if example.engaged:
                            seen = SeenExample(record.partition() or 0, record.offset() or 0, now)
                            key = example.decision_id, example.post_id
                            self.positives.setdefault(key, seen)  # the first one counts
        finally:
            self.consumer.close()

    def counts(self) -> tuple[int, int]:
        with self.lock:
            return self.examples, len(self.positives)


@dataclass(frozen=True)
class SeenVersion:
    version: str
    seen_s: float  # time.monotonic() when it appeared in the registry
    examples: int  # examples the learner had applied
    offsets: dict[int, int]  # examples partition -> next offset it covers


class RegistryWatcher(threading.Thread):
    """Polls the registry directory; notes when each version appears and what it covers."""

    def __init__(self, root: Path, topic: str) -> None:
        super().__init__(name="registry-watcher", daemon=True)
        self.registry = LocalModelRegistry(root)
        self.directory = root / "versions"
        self.topic = topic
        self.versions: list[SeenVersion] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def run(self) -> None:
        known: set[str] = set()
        while not self.stop.is_set():
            now = time.monotonic()
            names = os.listdir(self.directory) if self.directory.is_dir() else []
            fresh = sorted(
                (n for n in names if VERSION_PATTERN.match(n) and n not in known),
                key=lambda name: int(name[1:]),
            )
            for name in fresh:
                try:
                    manifest = self.registry.manifest(name)
                except RegistryError:
                    continue  # not whole yet: the next poll
                known.add(name)
                offsets = {
                    int(key.rsplit(":", 1)[1]): offset
                    for key, offset in manifest.training.kafka_offsets.items()
                    if key.rsplit(":", 1)[0] == self.topic
                }
                seen = SeenVersion(name, now, manifest.training.examples, offsets)
                with self.lock:
                    self.versions.append(seen)
            time.sleep(REGISTRY_POLL_S)

    def snapshot(self) -> list[SeenVersion]:
        with self.lock:
            return list(self.versions)


def first_covering(versions: list[SeenVersion], example: SeenExample) -> SeenVersion | None:
    """The first version (in order of appearance) that has learned from ``example``."""
    for version in versions:
        if version.offsets.get(example.partition, 0) > example.offset:
            return version
    return None
