"""The learner's batch retrains: one at a time, warm over the last window with the
learner's own settings, started on a schedule or on drift, each ending counted by
trigger and outcome."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from prometheus_client import REGISTRY

from feedrank.core.reporting import Reporter
from feedrank.core.settings import load_settings
from feedrank.learners.online.retraining import Retrainer, RetrainSchedule


@dataclass
class FakeProcess:
    command: list[str]
    environment: dict[str, str]
    exit_code: int | None = None

    def poll(self) -> int | None:
        return self.exit_code

    def terminate(self) -> None:
        self.exit_code = -15

    def wait(self, timeout: float | None = None) -> int | None:
        return self.exit_code


@dataclass
class Starts:
    processes: list[FakeProcess] = field(default_factory=list)

    def __call__(self, command: Sequence[str], environment: dict[str, str]) -> Any:
        self.processes.append(FakeProcess(list(command), environment))
        return cast(Any, self.processes[-1])


def retrains(trigger: str, outcome: str) -> float:
    labels = {"trigger": trigger, "outcome": outcome}
    return REGISTRY.get_sample_value("feedrank_learner_retrains_total", labels) or 0.0


def test_one_retrain_at_a_time_warm_over_the_window_each_end_counted() -> None:
    settings = load_settings(
        learner={"retrain_window_s": 86_400, "retrain_nproc": 2, "min_auc": 0.7}
    )
    starts, said = Starts(), list[str]()
    retrainer = Retrainer(settings, Reporter(say=said.append, warn=said.append), starts)
    published, below = retrains("drift", "published"), retrains("drift", "below_gate")

    assert retrainer.start("drift", "drift detected (loss rose)")
    assert not retrainer.start("drift", "drift detected again")  # the first still runs
    (first,) = starts.processes
    expected = ["train", "--from-kafka", "--warm", "--since", "86400s", "--nproc", "2"]
    assert first.command[-7:] == expected
    assert first.environment["FEEDRANK_LEARNER__MIN_AUC"] == "0.7"  # the learner's settings

    first.exit_code = 0
    retrainer.poll()
    assert retrains("drift", "published") == published + 1
    assert retrainer.start("drift", "drift detected once more")
    starts.processes[-1].exit_code = 3
    retrainer.poll()
    assert retrains("drift", "below_gate") == below + 1
    assert "the drift retrain ended: below gate (exit 3)" in said


def test_the_schedule_starts_retrains_until_stopped() -> None:
    settings = load_settings(learner={"retrain_every_s": 0.05})
    starts = Starts()
    retrainer = Retrainer(settings, Reporter(), starts)
    stop = threading.Event()
    schedule = RetrainSchedule(retrainer, 0.05, stop, poll_s=0.01)
    schedule.begin()
    deadline = time.monotonic() + 5
    while not starts.processes and time.monotonic() < deadline:
        time.sleep(0.01)
    starts.processes[0].exit_code = 0
    while len(starts.processes) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()
    schedule.thread.join(timeout=5)
    assert len(starts.processes) >= 2
    assert not schedule.thread.is_alive()


def test_a_running_retrain_stops_with_its_learner_counted_as_stopped() -> None:
    starts = Starts()
    retrainer = Retrainer(load_settings(), Reporter(), starts)
    stopped = retrains("drift", "stopped")
    retrainer.stop()  # nothing runs: nothing to do
    assert retrainer.start("drift", "drift detected")
    retrainer.stop()
    assert starts.processes[0].exit_code == -15  # SIGTERM
    assert retrainer.process is None
    assert retrains("drift", "stopped") == stopped + 1  # not "failed": no alert
