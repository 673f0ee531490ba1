"""A CI-sized run of benchmarks/scale_out.py on the session broker: replicas and balancer.

Two real ``feedrank serve`` replicas behind a real HAProxy take a closed loop straight and
through the balancer. No timing is asserted (docs/benchmarks.md, "Scale-out", holds the
full run's figures), only that every figure is there, sane and error-free. The join part
(``--parts join``) runs ``benchmarks/join_throughput.py`` at parallelism 1 and 2, whose
own smoke test (test_benchmark_smoke.py) covers that code; CI skips it here for time.
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
        [*BENCHMARK, "--smoke", "--parts", "rank", "--json", "--bootstrap", kafka.bootstrap],
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
    assert "join_runs" not in report  # the join part: test_benchmark_smoke.py
