"""The session-cluster supervisor: where it submits, how, and when it resubmits.

The submission command and the JobManager address are checked as they are; the
supervision loop runs against a stand-in for the submitted job (the integration test
``test_join_on_flink_cluster`` runs it against a real cluster)."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from feedrank.core.settings import load_settings
from feedrank.streaming import cluster_join
from feedrank.streaming.cluster_join import (
    CLIENT_JVM_ARGS,
    JOIN_MAIN,
    MISSING,
    UNREACHABLE,
    jobmanager_address,
    run_cluster_join,
    snapshot_path,
    submit_command,
    submit_join,
)
from feedrank.streaming.flink_rest import FlinkRestClient, FlinkRestError
from feedrank.streaming.join_status import JoinRun, JoinStatus
from tests.support.kafka import free_port


def test_the_jobmanager_is_the_one_asked_for_else_the_cluster_topologys() -> None:
    single = load_settings()
    assert jobmanager_address(single, None) is None
    assert jobmanager_address(single, "flink:8081") == "flink:8081"
    cluster = load_settings(cluster={"topology": "cluster", "flink_rest_port": 18081})
    assert jobmanager_address(cluster, None) == "127.0.0.1:18081"
    assert jobmanager_address(cluster, "flink:8081") == "flink:8081"


def test_flink_run_submits_join_main_detached_and_restores_from_the_snapshot() -> None:
    fresh = submit_command("127.0.0.1:18081", None)
    assert fresh[0].endswith("/pyflink/bin/flink")
    assert fresh[1:5] == ["run", "--detached", "--jobmanager", "127.0.0.1:18081"]
    assert "--fromSavepoint" not in fresh
    assert fresh[-2:] == ["--python", str(JOIN_MAIN)]
    assert JOIN_MAIN.is_file()
    snapshot = Path("/state/flink/checkpoints/abc/chk-7")
    restored = submit_command("127.0.0.1:18081", snapshot)
    assert (
        restored[restored.index("--fromSavepoint") + 1]
        == "file:///state/flink/checkpoints/abc/chk-7"
    )


@pytest.mark.parametrize(("given", "expected"), [(None, CLIENT_JVM_ARGS), ("-Xmx1g", "-Xmx1g")])
def test_the_flink_client_jvm_starts_light_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch, given: str | None, expected: str
) -> None:
    if given is None:
        monkeypatch.delenv("JVM_ARGS", raising=False)
    else:
        monkeypatch.setenv("JVM_ARGS", given)
    seen: dict[str, str] = {}

    def flink_run(command: list[str], **options: Any) -> subprocess.CompletedProcess[str]:
        seen.update(options["env"])
        return subprocess.CompletedProcess(
            command, 0, f"Job has been submitted with JobID {'a' * 32}\n", ""
        )

    monkeypatch.setattr(subprocess, "run", flink_run)
    assert submit_join(load_settings(), "127.0.0.1:18081", None) == "a" * 32
    assert seen["JVM_ARGS"] == expected


def test_snapshot_paths_from_flink_locations() -> None:
    assert snapshot_path("file:/state/savepoints/savepoint-1a2b3c-0123") == Path(
        "/state/savepoints/savepoint-1a2b3c-0123"
    )
    assert snapshot_path("/state/chk-3") == Path("/state/chk-3")


def test_an_absent_jobmanager_is_a_rest_error() -> None:
    rest = FlinkRestClient(f"http://127.0.0.1:{free_port()}", timeout_s=1)
    with pytest.raises(FlinkRestError, match="no Flink JobManager at"):
        rest.overview()


class StandInJob:
    """Plays the submitted job: the given states, one per poll, then RUNNING."""

    def __init__(self, states: list[str], stop: threading.Event) -> None:
        self.states, self.stop_event = states, stop
        self.started_with: bool | None = None
        self.resubmissions = 0
        self.stopped_in: str | None = None

    def make(self, *args: object, **kwargs: object) -> StandInJob:
        return self

    def wait_for_jobmanager(self, stop: threading.Event, timeout_s: float) -> bool:
        return True

    def start(self, *, restore: bool) -> None:
        self.started_with = restore

    def status(self) -> JoinStatus:
        if not self.states:
            self.stop_event.set()
        state = self.states.pop(0) if self.states else "RUNNING"
        return JoinStatus("job-1", state, None, 0, None)

    def failure_cause(self) -> str | None:
        return "java.lang.OutOfMemoryError: Java heap space (in Keyed Co-Process on tm-1)"

    def resubmit(self) -> bool:
        self.resubmissions += 1
        return True

    def stop(self, last_state: str) -> JoinRun:
        self.stopped_in = last_state
        return JoinRun(None, "STOPPED_WITH_SAVEPOINT", "file:/sp")


def supervise(
    states: list[str], monkeypatch: pytest.MonkeyPatch, warnings: list[str] | None = None
) -> tuple[StandInJob, list[str], JoinRun]:
    stop = threading.Event()
    job = StandInJob(states, stop)
    monkeypatch.setattr(cluster_join, "SessionClusterJoin", job.make)
    heard: list[str] = []
    run = run_cluster_join(
        load_settings(),
        "127.0.0.1:1",
        stop,
        on_resubmit=lambda: heard.append("resubmitted"),
        restore=False,
        poll_interval_s=0.001,
        warn=(warnings if warnings is not None else []).append,
    )
    return job, heard, run


def test_a_lost_job_is_resubmitted_once_and_a_stop_takes_a_savepoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job, heard, run = supervise(["RUNNING", UNREACHABLE, MISSING, "RUNNING"], monkeypatch)
    assert job.started_with is False
    assert job.resubmissions == 1
    assert heard == ["resubmitted"]
    assert job.stopped_in == "RUNNING"
    assert run.savepoint == "file:/sp"


def test_a_job_that_keeps_failing_is_not_resubmitted_in_a_tight_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    warnings: list[str] = []
    job, heard, _ = supervise(["FAILED"] * 50, monkeypatch, warnings)
    assert job.resubmissions == 1  # the next try waits 2 s, longer than these polls
    assert heard == ["resubmitted"]
    # The operator reads why it failed, as the JobManager's exception history has it.
    assert warnings == [
        "the join's job job-1 is FAILED (java.lang.OutOfMemoryError: Java heap space "
        "(in Keyed Co-Process on tm-1)): resubmitting it"
    ]


def test_restarts_inside_the_cluster_are_the_clusters_business(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job, heard, _ = supervise(["RUNNING", "RESTARTING", "RESTARTING", "RUNNING"], monkeypatch)
    assert job.resubmissions == 0
    assert heard == []
