"""The join as a real job on a Flink standalone session cluster.

A JobManager and two TaskManagers start from PyFlink's own scripts (the local stack's
components, on free ports, under its supervisor); ``feedrank join --jobmanager``
submits ``join_main.py`` at parallelism 2 and supervises it. A TaskManager is SIGKILLed
mid-stream and the supervisor starts it again (and the other one too, when the job's
failover took it down: Flink 2.2 shuts a TaskManager down when cancelling the reward
intake's pandas UDF throws, see docs/streaming.md); then the join is stopped with a
savepoint and resubmitted from it. Every example is read back read-committed: exactly
the expected (decision, post) pairs, none twice.
Workload and helpers are the mini-cluster recovery test's. The JobManager's loss (the
job forgotten, resubmitted from its newest checkpoint) is the chaos test's
(``tests/integration/chaos``), which checks the resubmission and exactly once under load.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from confluent_kafka import Producer

from feedrank.core.settings import Settings, load_settings
from feedrank.stack.components import Component
from feedrank.stack.flink_cluster import FlinkProcessComponent, flink_cluster_components
from feedrank.stack.jars import JarLocations
from feedrank.stack.kafka_broker import KafkaBroker
from feedrank.stack.supervisor import LocalStack
from feedrank.streaming.flink_rest import FlinkRestClient
from tests.integration.streaming.conftest import JoinProcess
from tests.integration.streaming.test_join_recovery import (
    CLOCK_INDEX,
    CLOCK_MS,
    STEP_MS,
    T0,
    dead_letters,
    decision,
    example_keys,
    join_settings,
    like,
    make_topics,
    move_the_clock,
)
from tests.support.kafka import TopicFactory, free_port

ITEMS = 2
TASKMANAGERS = {"flink-taskmanager-1", "flink-taskmanager-2"}
HOUR_MS = 3_600_000


@dataclass
class FlinkCluster:
    """The session cluster's processes under the local stack's supervisor, which starts
    again whatever dies, as ``feedrank up --topology cluster`` does."""

    settings: Settings
    stack: LocalStack
    stop_supervising: threading.Event = field(default_factory=threading.Event)
    events: list[str] = field(default_factory=list)  # the supervisor's restarts

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.settings.cluster.flink_rest_port}"

    @property
    def rest(self) -> FlinkRestClient:
        return FlinkRestClient(f"http://{self.address}")

    def supervise(self) -> None:
        self.stack.supervise(self.stop_supervising, tie_to_parent=True, on_event=self.events.append)

    def kill(self, name: str) -> None:
        """SIGKILL the component; the supervisor starts it again."""
        [pid] = [status.pid for status in self.stack.status() if status.name == name]
        assert pid is not None, f"{name} is not running"
        os.kill(pid, signal.SIGKILL)

    def log_tail(self, name: str, lines: int = 40) -> str:
        """The last of a process's log lines that say what Flink did (states, checkpoints)."""
        directory = self.settings.paths.state_dir / "logs" / "flink-cluster" / name
        said = [
            line[:300]
            for log in sorted(directory.glob("*.log"))
            for line in log.read_text(errors="replace").splitlines()
            if " switched from " in line or "heckpoint" in line or "TaskManager" in line
        ]
        return f"{name}'s log, last {lines} lines of note:\n" + "\n".join(said[-lines:])


@pytest.fixture(scope="module")
def flink_cluster(
    tmp_path_factory: pytest.TempPathFactory, jars: JarLocations
) -> Iterator[FlinkCluster]:
    settings = load_settings(
        paths={"state_dir": tmp_path_factory.mktemp("flink-cluster")},
        cluster={
            "flink_rest_port": free_port(),
            "flink_rpc_port": free_port(),
            "flink_taskmanagers": 2,
            "flink_slots_per_taskmanager": 1,
        },
    )
    components: list[Component] = [
        component
        for component in flink_cluster_components(settings)
        if isinstance(component, FlinkProcessComponent)
    ]
    assert {component.name for component in components} == {"flink-jobmanager", *TASKMANAGERS}
    cluster = FlinkCluster(settings, LocalStack(settings, components))
    supervision = threading.Thread(target=cluster.supervise, daemon=True)
    try:
        cluster.stack.up(detach=False)
        supervision.start()
        yield cluster
    finally:
        cluster.stop_supervising.set()
        if supervision.is_alive():
            supervision.join(timeout=30)
        cluster.stack.down()


def wait_for_checkpoint_after(
    cluster: FlinkCluster,
    job_id: str,
    checkpoint_id: int,
    *,
    restored: bool = False,
    timeout_s: float = 120,
) -> None:
    """Until the job completed a checkpoint newer than ``checkpoint_id`` (and, when
    ``restored``, after restoring one): every task of it runs again. On a timeout the
    message shows the job's state, its latest failures and the JobManager's log."""
    rest = cluster.rest
    deadline = time.monotonic() + timeout_s
    while True:
        checkpoints = rest.checkpoints(job_id)
        if checkpoints.last_id > checkpoint_id and (checkpoints.restored_from or not restored):
            return
        if time.monotonic() >= deadline:
            pytest.fail(
                f"no checkpoint after {checkpoint_id}{' restored' if restored else ''} in "
                f"{timeout_s:.0f}s: job {rest.job_state(job_id)}, {checkpoints}; latest "
                f"failures: {rest.failures(job_id)}\n{cluster.log_tail('flink-jobmanager')}"
            )
        time.sleep(0.2)


def produce_decisions(
    producer: Producer, topics: dict[str, str], indices: range, first_ms: int = T0
) -> None:
    """Decisions of two items each, ``STEP_MS`` apart from ``first_ms``; a quarter liked."""
    for index in indices:
        at_ms = first_ms + (index - indices.start) * STEP_MS
        key = f"u{index}".encode()
        producer.produce(topics["decisions"], decision(index, ITEMS, at_ms), key=key)
        if index % 4 == 0:  # positives
            producer.produce(topics["rewards"], like(index, at_ms + 1), key=key)
    assert producer.flush(30) == 0


def shown_pairs(indices: range) -> set[tuple[str, str]]:
    return {(f"d{index}", f"p{item}") for index in indices for item in range(ITEMS)}


def assert_exactly(
    seen: Counter[tuple[str, str]], expected: set[tuple[str, str]], kafka: KafkaBroker, dlq: str
) -> None:
    duplicates = {key: count for key, count in seen.items() if count > 1}
    assert not duplicates, f"{len(duplicates)} examples twice, e.g. {list(duplicates)[:3]}"
    missing = expected - set(seen)
    assert not missing, (
        f"{len(missing)} examples missing, e.g. {sorted(missing)[:3]}; "
        f"dead letters: {dead_letters(kafka.bootstrap, dlq)[:5]}"
    )
    assert set(seen) == expected


@pytest.mark.timeout(900)
def test_exactly_once_through_a_lost_taskmanager_and_a_savepoint(
    kafka: KafkaBroker,
    new_topic: TopicFactory,
    join_process: Callable[..., JoinProcess],
    flink_cluster: FlinkCluster,
    tmp_path: Path,
) -> None:
    topics = make_topics(new_topic)
    settings = join_settings(kafka, tmp_path / "state", topics)
    producer = Producer({"bootstrap.servers": kafka.bootstrap, "enable.idempotence": True})
    rest = flink_cluster.rest

    def produce(indices: range, first_ms: int = T0) -> None:
        produce_decisions(producer, topics, indices, first_ms)

    first = join_process(settings, "--jobmanager", flink_cluster.address)
    first.start()
    first.wait_running(timeout_s=300)  # `flink run` builds and submits the job first
    [job] = [job for job in rest.jobs() if job.state == "RUNNING"]
    assert job.name == "feedrank-join"
    assert rest.job_taskmanagers(job.job_id) == TASKMANAGERS

    decisions = 1_000
    produce(range(decisions // 2))
    wait_for_checkpoint_after(flink_cluster, job.job_id, rest.checkpoints(job.job_id).last_id)
    # Mid-stream: the first half's windows are open in the join's state, and the second
    # half arrives while the job restarts.
    before_kill = rest.checkpoints(job.job_id).last_id
    flink_cluster.kill("flink-taskmanager-1")
    produce(range(decisions // 2, decisions))
    # The supervisor starts the TaskManager again; the cluster restarts the job (after
    # a backoff, once the new TaskManager's slot is offered) from its checkpoint: wait
    # for that, not for a fixed time.
    wait_for_checkpoint_after(flink_cluster, job.job_id, before_kill, restored=True, timeout_s=300)
    assert any("flink-taskmanager-1" in cause for cause in rest.failures(job.job_id, limit=10))
    assert any("flink-taskmanager-1" in event for event in flink_cluster.events)
    clocks = move_the_clock(producer, topics)

    expected = shown_pairs(range(decisions))
    assert_exactly(
        example_keys(kafka.bootstrap, topics["examples"], len(expected)),
        expected,
        kafka,
        topics["dlq"],
    )
    # The cluster restored the same job from its checkpoint; the supervisor resubmitted nothing.
    assert rest.job_state(job.job_id) == "RUNNING"
    assert rest.checkpoints(job.job_id).restored_from is not None
    assert first.gauge("feedrank_join_resubmissions_total") == 0

    first.stop(grace_s=120)  # SIGTERM: stop with a savepoint
    assert "join stopped (STOPPED_WITH_SAVEPOINT); savepoint file:" in first.log()
    assert rest.job_state(job.job_id) == "FINISHED"

    second = join_process(settings, "--jobmanager", flink_cluster.address)
    second.start()
    second.wait_running(timeout_s=300)
    assert "restored from savepoint-" in second.log()
    more = range(decisions, decisions + 200)
    produce(more, first_ms=CLOCK_MS + 60_000)
    move_the_clock(producer, topics, at_ms=CLOCK_MS + HOUR_MS, first_index=CLOCK_INDEX + 10)

    # The first clock's decisions are closed by the second clock: one example each.
    expected |= shown_pairs(more) | {(f"d{clock}", "p0") for clock in clocks}
    assert_exactly(
        example_keys(kafka.bootstrap, topics["examples"], len(expected)),
        expected,
        kafka,
        topics["dlq"],
    )
