"""A CI-sized run of benchmarks/freshness.py on the session broker: engagement -> version.

The real `feedrank join` and `feedrank learn` run as child processes; every sampled like
must reach a registry version. No timing target is asserted here (that is what the full
run and docs/benchmarks.md are for), only that the figures are there and consistent.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from feedrank.stack.kafka_broker import KafkaBroker

ROOT = Path(__file__).resolve().parents[3]


def test_freshness_smoke(kafka: KafkaBroker) -> None:
    arguments = ["--smoke", "--json", "--bootstrap", kafka.bootstrap]
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.freshness", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout[result.stdout.index("{") :])
    assert report["engagements"] > 20
    assert report["reached_version"] == report["engagements"]  # every like was learned
    assert report["no_example"] == 0
    assert report["unreached"] == 0
    assert report["versions_used"] >= 2  # the cadence, not one final version
    for stage in ("freshness", "join", "learner"):
        p50, p95, top = (report[f"{stage}_{q}_s"] for q in ("p50", "p95", "max"))
        assert math.isfinite(p50)
        assert p50 <= p95 <= top
    assert report["freshness_p50_s"] > 0
    # The join commits on checkpoints, and a version needs a publish after the example.
    assert 0 < report["join_p50_s"] < report["freshness_p50_s"]
    assert report["learner_p50_s"] > 0
    assert report["freshness_max_s"] < 10 * report["ideal_pipeline_s"]
    assert report["examples_per_s"] > 0
