"""The online learner rides out a broker crash under traffic: the broker is SIGKILLed
while examples stream in and restarted a while later; the learner stays up, says it
cannot reach Kafka meanwhile (``feedrank_learner_kafka_up`` 0), and then learns every
example produced exactly once (count, key digest and offsets) and commits again."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from feedrank.core import codecs
from feedrank.core.kafka_topics import TopicSpec, ensure_topics
from feedrank.core.settings import load_settings, settings_to_environment
from feedrank.core.time_units import DAY_MS
from feedrank.learners.online.checkpoint import CheckpointStore, StreamProgress, key_digest
from feedrank.stack.jars import JarLocations
from tests.support.kafka import free_port
from tests.support.restartable_broker import RestartableBroker, started_broker
from tests.unit.learners.factories import simulated_examples

ROOT = Path(__file__).resolve().parents[3]
TOPIC, GROUP = "feedrank.examples.outage", "feedrank-learner-outage-test"
EXAMPLES, PER_SECOND = 2_400, 120  # 20 s of traffic; the broker is down for part of it
DOWN_S = 12.0  # longer than a commit waits for its coordinator (6 s)


@pytest.fixture
def broker(tmp_path: Path, jars: JarLocations) -> Iterator[RestartableBroker]:
    with started_broker(tmp_path / "kafka", jars) as running:
        yield running


class Traffic:
    """Produces the examples at a steady rate on a thread, idempotently (each once)."""

    def __init__(self, bootstrap: str, examples: list[bytes]) -> None:
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "message.timeout.ms": 300_000,  # rides out the outage
                "log_level": 0,
            }
        )
        self.examples = examples
        self.delivered = 0
        self.failed: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        for index, value in enumerate(self.examples):
            while time.monotonic() < started + index / PER_SECOND:
                self.producer.poll(0.005)
            self.producer.produce(
                TOPIC, value=value, partition=index % 2, on_delivery=self._delivered
            )
        self.producer.flush(280)

    def _delivered(self, error: KafkaError | None, _: Message) -> None:
        if error is None:
            self.delivered += 1
        else:
            self.failed.append(str(error))


def learner(
    bootstrap: str, state: Path, metrics_port: int, log_file: Path
) -> subprocess.Popen[bytes]:
    settings = load_settings(
        kafka={"bootstrap_servers": bootstrap}, paths={"state_dir": state / "stack"}
    )
    environment = {
        **os.environ,
        **settings_to_environment(settings),
        "FEEDRANK_TOPICS__EXAMPLES": TOPIC,
        "FEEDRANK_LEARNER__FEEDBACK": "complete",
        "FEEDRANK_LEARNER__STATE_DIR": str(state / "checkpoints"),
        "FEEDRANK_PATHS__REGISTRY_DIR": str(state / "registry"),
        "FEEDRANK_LEARNER__GROUP_ID": GROUP,
        "FEEDRANK_LEARNER__MICRO_BATCH_SIZE": "100",
        "FEEDRANK_LEARNER__CHECKPOINT_EVERY_EXAMPLES": "400",
        "FEEDRANK_LEARNER__CHECKPOINT_EVERY_S": "1",
        "FEEDRANK_LEARNER__PUBLISH_EVERY_EXAMPLES": "1000",
        "FEEDRANK_LEARNER__PUBLISH_EVERY_S": "3600",
        "FEEDRANK_LEARNER__USER_ID_BUCKETS": "512",
        "FEEDRANK_LEARNER__POST_ID_BUCKETS": "1024",
        "FEEDRANK_PORTS__LEARNER_METRICS": str(metrics_port),
        "FEEDRANK_WORLD__NUM_USERS": "60",
        "FEEDRANK_WORLD__NUM_CREATORS": "20",
        "FEEDRANK_WORLD__NUM_POSTS": "400",
        "FEEDRANK_WORLD__SEED": "3",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "feedrank.cli.main", "learn"],
        cwd=ROOT,
        env=environment,
        stdout=log_file.open("wb"),  # a file, not a pipe: nothing blocks on a full pipe
        stderr=subprocess.STDOUT,
    )


def kafka_up(metrics_port: int) -> float | None:
    """The learner's ``feedrank_learner_kafka_up``; None before /metrics answers."""
    try:
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("feedrank_learner_kafka_up "):
            return float(line.split()[1])
    return None


def wait_for(
    condition: Callable[[], bool], what: str, process: subprocess.Popen[bytes], timeout_s: float
) -> None:
    """Poll ``condition`` (health, progress: never a guessed sleep) while the learner lives."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the learner exited while waiting for {what}"
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout_s:.0f}s: {what}")


def committed(bootstrap: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP})
    try:
        partitions = consumer.committed([TopicPartition(TOPIC, p) for p in (0, 1)], timeout=30)
        return {tp.partition: tp.offset for tp in partitions}
    finally:
        consumer.close()


def test_the_learner_rides_out_a_broker_crash_and_applies_every_example_once(
    broker: RestartableBroker, tmp_path: Path
) -> None:
    ensure_topics(
        AdminClient({"bootstrap.servers": broker.bootstrap}), [TopicSpec(TOPIC, 2, 1, DAY_MS)]
    )
    examples = list(simulated_examples(EXAMPLES, seed=11))[:EXAMPLES]
    keys = [f"{example.decision_id}/{example.post_id}" for example in examples]
    assert len(set(keys)) == EXAMPLES
    store = CheckpointStore(tmp_path / "learner" / "checkpoints")
    metrics_port = free_port()
    log_file = tmp_path / "learner.log"
    process = learner(broker.bootstrap, tmp_path / "learner", metrics_port, log_file)
    traffic = Traffic(broker.bootstrap, [codecs.encode(example) for example in examples])
    try:
        wait_for(lambda: kafka_up(metrics_port) == 1.0, "the learner up", process, 180)
        traffic.thread.start()

        def applied(count: int) -> bool:
            progress = store.progress()
            return progress is not None and progress.examples_applied >= count

        wait_for(lambda: applied(600), "600 examples learned", process, 120)
        broker.crash()  # mid-stream: examples in flight, a checkpoint's commit due
        crashed = time.monotonic()
        wait_for(lambda: kafka_up(metrics_port) == 0.0, "kafka_up at 0", process, 60)
        time.sleep(max(DOWN_S - (time.monotonic() - crashed), 0))  # an outage, not a blip
        assert process.poll() is None
        broker.start()
        wait_for(lambda: kafka_up(metrics_port) == 1.0, "kafka_up back at 1", process, 120)
        traffic.thread.join(timeout=300)
        assert traffic.failed == []
        assert traffic.delivered == EXAMPLES
        wait_for(lambda: applied(EXAMPLES), "every example learned", process, 180)
    finally:
        process.terminate()
        process.wait(timeout=120)
    output = log_file.read_text(errors="replace")
    assert process.returncode == 0, output[-4000:]
    assert "the online learner cannot reach Kafka" in output, output[-4000:]
    assert "the online learner reaches Kafka again" in output, output[-4000:]

    final = store.progress()
    assert final is not None
    assert_each_example_once(final, keys)
    ends = {f"{TOPIC}:0": (EXAMPLES + 1) // 2, f"{TOPIC}:1": EXAMPLES // 2}
    assert final.offsets == ends
    assert committed(broker.bootstrap) == {0: ends[f"{TOPIC}:0"], 1: ends[f"{TOPIC}:1"]}


def assert_each_example_once(progress: StreamProgress, keys: list[str]) -> None:
    assert progress.examples_applied == len(keys)  # none lost …
    assert progress.key_digest == key_digest(keys)  # … and none applied twice
