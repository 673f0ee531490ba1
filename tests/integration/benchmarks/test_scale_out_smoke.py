"""A CI-sized run of benchmarks/scale_out.py on the session broker: replicas, balancer, join.

Two real ``feedrank serve`` replicas behind a real HAProxy take a closed loop straight and
through the balancer, and the join drains a backlog at parallelism 1 and 2 in child
processes. No timing is asserted (docs/benchmarks.md, "Scale-out", holds the full run's
figures), only that every figure is there, sane and error-free.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from feedrank.stack.kafka_broker import KafkaBroker

ROOT = Path(__file__).resolve().parents[3]
BENCHMARK = [sys.executable, "-m", "benchmarks.scale_out"]
RANK_RUNS = {"direct_1": (1, False), "balanced_1": (1, True), "balanced_2": (2, True)}


def test_scale_out_smoke(kafka: KafkaBroker) -> None:
    result = subprocess.run(
        [*BENCHMARK, "--smoke", "--json", "--bootstrap", kafka.bootstrap],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert report["posts"] == 5_000
    assert report["rank_errors"] == 0
    for name, (replicas, balanced) in RANK_RUNS.items():
        run = report["rank_runs"][name]
        assert (run["replicas"], run["balanced"]) == (replicas, balanced)
        assert run["qps"] > 0
        assert 0 < run["p50_ms"] <= run["p99_ms"]
        assert run["explore_cpu_ms_per_call"] > 0
        balancer_cpu = run["balancer_cpu_ms_per_call"]
        assert balancer_cpu >= 0 if balanced else balancer_cpu == 0
    for key in ("rank_2_vs_1_replicas", "rank_balancer_vs_direct", "rank_qps_per_explore_core"):
        assert math.isfinite(report[key])
        assert report[key] > 0
    for parallelism in (1, 2):
        run = report["join_runs"][f"parallelism_{parallelism}"]
        assert run["parallelism"] == parallelism
        assert run["join_items_per_s"] > 0
    assert report["join_2_vs_1_parallelism"] > 0
    assert report["decision_bytes_mean"] > 0
