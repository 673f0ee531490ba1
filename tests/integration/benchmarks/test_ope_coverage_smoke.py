"""A CI-sized run of benchmarks/ope_coverage.py: it runs end to end and reports sane numbers.

Coverage itself is not asserted at this size (that is what the full run and
docs/benchmarks.md are for).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_ope_coverage_smoke() -> None:
    arguments = [
        "--seeds", "3", "--decisions", "300", "--truth-decisions", "1000",
        "--users", "200", "--creators", "30", "--posts", "2000", "--workers", "1", "--json",
    ]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "benchmarks/ope_coverage.py", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "coverage" in result.stdout
    report = json.loads(result.stdout[result.stdout.index('{"scenario"') :])
    assert 0 < report["true_target_value"] < 1
    assert [s["estimator"] for s in report["summaries"][:3]] == ["IPS", "SNIPS", "DR"]
    for summary in report["summaries"]:
        assert 0.0 <= summary["coverage"] <= 1.0
        assert math.isfinite(summary["rmse"])
        assert summary["mean_ess"] > 0
