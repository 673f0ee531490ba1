from __future__ import annotations

import os
import signal
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pyflink.table import TableEnvironment

from feedrank.core.settings import Settings, settings_to_environment
from feedrank.stack.jars import JarLocations
from feedrank.stack.process import ManagedProcess
from feedrank.streaming.flink_environment import FlinkJobOptions, create_table_environment

JOIN_TAG = "feedrank.component=join-test"


@pytest.fixture
def table_env(settings_for_kafka: Settings, jars: JarLocations) -> TableEnvironment:
    """A fresh TableEnvironment on PyFlink's local mini-cluster with the Kafka connector."""
    options = FlinkJobOptions(parallelism=2, checkpoint_interval_s=1.0)
    return create_table_environment(settings_for_kafka, options)


@dataclass
class JoinProcess:
    """``feedrank join [arguments]`` run as a child process (its own process group), as in
    production."""

    settings: Settings
    log_file: Path
    arguments: tuple[str, ...] = ()
    process: ManagedProcess | None = None

    def start(self) -> None:
        command = [
            sys.executable,
            "-X",
            JOIN_TAG,
            "-m",
            "feedrank.cli.main",
            "join",
            *self.arguments,
        ]
        environment = {k: v for k, v in os.environ.items() if not k.startswith("FEEDRANK_")}
        environment.update(settings_to_environment(self.settings))
        self.process = ManagedProcess.launch(
            command,
            log_file=self.log_file,
            tie_to_parent=True,
            tag=JOIN_TAG,
            environment=environment,
        )

    def wait_running(self, timeout_s: float = 120.0) -> None:
        """Until the job reports RUNNING on its metrics port (never a sleep)."""
        port = self.settings.ports.streaming_metrics
        self._poll(lambda: _gauge(port, "feedrank_join_job_running") == 1.0, timeout_s)

    def wait_checkpoint(self, timeout_s: float = 60.0) -> None:
        """Until this run completed a checkpoint (so a crash has something to restore)."""
        port = self.settings.ports.streaming_metrics
        self._poll(lambda: (_gauge(port, "feedrank_join_last_checkpoint") or 0) >= 1, timeout_s)

    def kill(self) -> None:
        """SIGKILL the whole process group: the Python client and the mini-cluster's JVM."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.stop()  # reaps it

    def stop(self, grace_s: float = 30) -> None:
        if self.process is not None:
            self.process.stop(grace_s=grace_s)

    def gauge(self, name: str) -> float | None:
        """A sample of its /metrics (None while it does not answer)."""
        return _gauge(self.settings.ports.streaming_metrics, name)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def wait_until(self, condition: Callable[[], bool], timeout_s: float) -> None:
        """Until ``condition`` holds, failing if the process exits or time runs out."""
        self._poll(condition, timeout_s)

    def _poll(self, condition: Callable[[], bool], timeout_s: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.is_running(), f"feedrank join exited:\n{self.log()[-3000:]}"
            if condition():
                return
            time.sleep(0.2)
        raise AssertionError(f"feedrank join not there in {timeout_s}s:\n{self.log()[-3000:]}")


def _gauge(port: int, name: str) -> float | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    return None


@pytest.fixture
def join_process(tmp_path: Path) -> Iterator[Callable[..., JoinProcess]]:
    """Make ``feedrank join`` processes (``make(settings, *arguments)``); every one is
    stopped at the end of the test."""
    made: list[JoinProcess] = []

    def make(settings: Settings, *arguments: str) -> JoinProcess:
        made.append(JoinProcess(settings, tmp_path / f"join-{len(made)}.log", arguments))
        return made[-1]

    yield make
    for join in made:
        join.stop()
