"""The online learner against the real broker: killed with SIGKILL mid-stream and restarted,
it applies every example exactly once and publishes a version naming its offsets; with
fake negatives it learns every shown item of the decisions topic and the join's positives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from feedrank.core.settings import Settings, settings_to_environment
from feedrank.learners.online.checkpoint import CheckpointStore, StreamProgress, key_digest
from feedrank.learners.online.feedback import slate_decision
from feedrank.registry import LocalModelRegistry
from feedrank.stack.kafka_broker import KafkaBroker
from feedrank.v1 import events_pb2
from tests.support.kafka import TopicFactory, produce_alternately
from tests.unit.learners.factories import simulated_examples

ROOT = Path(__file__).resolve().parents[3]
FIRST, SECOND = 1_500, 1_500
GROUP = "feedrank-learner-test"


def learner_process(
    settings: Settings,
    topic: str,
    state: Path,
    *extra: str,
    environment_overrides: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    environment = {
        **os.environ,
        **settings_to_environment(settings),
        "FEEDRANK_TOPICS__EXAMPLES": topic,
        "FEEDRANK_LEARNER__FEEDBACK": "complete",
        "FEEDRANK_LEARNER__STATE_DIR": str(state / "checkpoints"),
        "FEEDRANK_PATHS__REGISTRY_DIR": str(state / "registry"),
        "FEEDRANK_LEARNER__GROUP_ID": GROUP,
        "FEEDRANK_LEARNER__MICRO_BATCH_SIZE": "100",
        "FEEDRANK_LEARNER__CHECKPOINT_EVERY_EXAMPLES": "700",
        "FEEDRANK_LEARNER__CHECKPOINT_EVERY_S": "3600",
        "FEEDRANK_LEARNER__PUBLISH_EVERY_EXAMPLES": "1000",
        "FEEDRANK_LEARNER__PUBLISH_EVERY_S": "3600",
        "FEEDRANK_LEARNER__USER_ID_BUCKETS": "512",
        "FEEDRANK_LEARNER__POST_ID_BUCKETS": "1024",
        "FEEDRANK_WORLD__NUM_USERS": "60",
        "FEEDRANK_WORLD__NUM_CREATORS": "20",
        "FEEDRANK_WORLD__NUM_POSTS": "400",
        "FEEDRANK_WORLD__SEED": "3",
        **(environment_overrides or {}),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "feedrank.cli.main", "learn", "--no-metrics", *extra],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def wait_for_progress(
    store: CheckpointStore, at_least: int, process: subprocess.Popen[bytes]
) -> StreamProgress:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        progress = store.progress()
        if progress is not None and progress.examples_applied >= at_least:
            return progress
        assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint with {at_least} examples within 60 s")


def committed(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP})
    try:
        partitions = consumer.committed([TopicPartition(topic, p) for p in (0, 1)], timeout=30)
        return {tp.partition: tp.offset for tp in partitions}
    finally:
        consumer.close()


def test_a_killed_learner_resumes_without_losing_or_repeating_examples(
    kafka: KafkaBroker, settings_for_kafka: Settings, new_topic: TopicFactory, tmp_path: Path
) -> None:
    topic = new_topic("examples", partitions=2)
    examples = list(simulated_examples(FIRST + SECOND, seed=5))[: FIRST + SECOND]
    state = tmp_path / "learner"
    store = CheckpointStore(state / "checkpoints")
    produce_alternately(kafka.bootstrap, topic, examples[:FIRST])

    first = learner_process(settings_for_kafka, topic, state)
    try:
        wait_for_progress(store, 1_000, first)  # checkpoints at 700, and 1,000 (a publish)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    killed_at = store.progress()
    assert killed_at is not None
    assert killed_at.examples_applied < FIRST

    produce_alternately(kafka.bootstrap, topic, examples[FIRST:])
    second = learner_process(settings_for_kafka, topic, state, "--until-idle", "3")
    output, _ = second.communicate(timeout=120)
    assert second.returncode == 0, output.decode()[-3000:]

    final = store.progress()
    assert final is not None
    keys = [f"{example.decision_id}/{example.post_id}" for example in examples]
    assert final.examples_applied == FIRST + SECOND
    assert final.key_digest == key_digest(keys)  # every example once, none twice
    ends = {f"{topic}:0": (FIRST + SECOND + 1) // 2, f"{topic}:1": (FIRST + SECOND) // 2}
    assert final.offsets == ends
    assert committed(kafka.bootstrap, topic) == {0: ends[f"{topic}:0"], 1: ends[f"{topic}:1"]}

    registry = LocalModelRegistry(state / "registry")
    latest = registry.latest()
    assert latest is not None
    assert latest.training.kafka_offsets == ends
    assert latest.training.examples == FIRST + SECOND
    assert latest.training.source == f"kafka:{topic}"
    assert latest.parent  # the versions form a chain
    registry.open_verified(latest.version)


def test_fake_negatives_learn_each_impression_and_each_engagement_once(
    kafka: KafkaBroker, settings_for_kafka: Settings, new_topic: TopicFactory, tmp_path: Path
) -> None:
    examples_topic = new_topic("examples", partitions=2)
    decisions_topic = new_topic("decisions", partitions=2)
    examples = list(simulated_examples(1_000, seed=7))
    slates: dict[str, list[events_pb2.LabelledExample]] = {}
    for example in examples:
        slates.setdefault(example.decision_id, []).append(example)
    decisions = [slate_decision(slate) for slate in slates.values()]
    positives = [example for example in examples if example.engaged]
    assert 0 < len(positives) < len(examples)
    produce_alternately(kafka.bootstrap, decisions_topic, decisions)
    produce_alternately(
        kafka.bootstrap, examples_topic, examples
    )  # the join's negatives are skipped

    state = tmp_path / "learner"
    process = learner_process(
        settings_for_kafka,
        examples_topic,
        state,
        "--until-idle",
        "3",
        environment_overrides={
            "FEEDRANK_LEARNER__FEEDBACK": "fake_negatives",
            "FEEDRANK_TOPICS__DECISIONS": decisions_topic,
        },
    )
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output.decode()[-3000:]
    progress = CheckpointStore(state / "checkpoints").progress()
    assert progress is not None
    assert progress.examples_applied == len(examples) + len(positives)
    keys = [f"{example.decision_id}/{example.post_id}" for example in [*examples, *positives]]
    assert progress.key_digest == key_digest(keys)
    assert sum(
        offset for key, offset in progress.offsets.items() if key.startswith(decisions_topic)
    ) == len(decisions)
    latest = LocalModelRegistry(state / "registry").latest()
    assert latest is not None
    assert latest.training.source == f"kafka:{examples_topic}+{decisions_topic}"
