"""Chaos under load, CI-sized: the cluster topology loses one piece at a time, under
Rank traffic, and loses nothing (``benchmarks/chaos.py --size ci``).

The JobManager and the deploy service are each SIGKILLed (the full run also kills the
leader broker of ``feedrank.decisions``/0, a TaskManager, an explore replica and the
learner, which CI tests alone: test_kafka_cluster.py, test_join_on_flink_cluster.py,
test_explore_balancer.py, test_online_learner_kafka.py) and restarted by
the stack's supervisor (the join resubmitted once the JobManager forgot it). The run
must recover from every fault with no Rank call failed, no answered decision lost,
every closed decision's examples out exactly once and the learner having applied every
example exactly once.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from feedrank.stack.jars import JarLocations

ROOT = Path(__file__).resolve().parents[3]
RUN_LIMIT_S = 1500
STOP_LIMIT_S = 180  # an interrupted run stopping its stack (the join with a savepoint)


# pytest's default 600 s would cut a slow run short, SIGKILL it and leave its detached
# stack (and its supervisor) running under every later test.
@pytest.mark.timeout(RUN_LIMIT_S + STOP_LIMIT_S + 60)
def test_cluster_survives_each_fault_under_load(jars: JarLocations, tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.chaos",
            "--size",
            "ci",
            "--json",
            "--work",
            str(tmp_path),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=RUN_LIMIT_S)
    finally:
        stop_interrupted(process)
    assert process.returncode == 0, stderr[-5000:]
    report = json.loads(stdout[stdout.index("{") :])
    faults = {fault["fault"]: fault for fault in report["faults"]}
    assert len(faults) == report["faults_planned"] == 2, report
    assert all(fault["recovered"] for fault in faults.values()), report["faults"]
    assert all(fault["restarts"] >= 1 for fault in faults.values()), report["faults"]
    assert report["calls"] > 0, report
    assert report["calls_failed"] == 0, report
    assert report["decisions_lost"] == 0, report
    assert report["examples_expected"] > 0, report
    assert report["examples_missing"] == 0, report
    assert report["examples_duplicated"] == 0, report
    assert report["learner_exactly_once"], report
    # The JobManager's loss forgot the job: it was resubmitted from its newest checkpoint
    # (examples exactly once above), as test_join_on_flink_cluster once checked alone.
    assert report["join_resubmissions"] >= 1, report


def stop_interrupted(process: subprocess.Popen[str]) -> None:
    """A run cut short (its time limit, pytest's, Ctrl-C) gets SIGINT, on which it stops
    the stack it started detached; SIGKILL only if it does not end in time."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.communicate(timeout=STOP_LIMIT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
