"""The online learner's publish gate: a rolling AUC floor and a calibration range,
judged on progressive validation; skipped (and saying so) without figures; the verdict
recorded so deploy and ``rollout models`` can read it back."""

from __future__ import annotations

import math

import pytest

from feedrank.learners.online.publish_gate import PublishGate
from feedrank.registry.publish_verdict import PublishVerdict


def judged(auc: float, calibration: float) -> tuple[str, str, PublishVerdict | None]:
    outcome = PublishGate(0.55, (0.33, 3.0)).judge(
        {"rolling_auc": auc, "calibration": calibration, "rolling_log_loss": 0.3}
    )
    recorded = {"rolling_auc": auc, "calibration": calibration, **outcome.metrics}
    return outcome.verdict, outcome.reason, PublishVerdict.from_metrics(recorded)


def test_a_ranking_calibrated_version_passes() -> None:
    verdict, reason, recorded = judged(0.74, 1.1)
    assert verdict == "passed"
    assert "0.740" in reason
    assert recorded is not None
    assert recorded.passed


@pytest.mark.parametrize(
    ("auc", "calibration", "named"),
    [
        (0.51, 1.0, "rolling AUC 0.510 below the floor 0.55"),
        (0.80, 5.0, "calibration 5.00 outside [0.33, 3.00]"),
        (0.80, 0.1, "calibration 0.10 outside"),
    ],
)
def test_a_collapsed_version_fails_naming_why(auc: float, calibration: float, named: str) -> None:
    verdict, reason, recorded = judged(auc, calibration)
    assert verdict == "failed"
    assert named in reason
    assert recorded is not None
    assert not recorded.passed
    assert recorded.min_auc == 0.55
    assert recorded.calibration_range == (0.33, 3.0)
    assert "floor 0.55" in recorded.summary()


def test_without_figures_the_gate_is_skipped_and_records_no_verdict() -> None:
    verdict, reason, recorded = judged(math.nan, math.nan)
    assert verdict == "skipped"
    assert "too few examples" in reason
    assert recorded is None  # deploy lets it through to the next gate


def test_a_gate_outside_its_domain_is_refused() -> None:
    with pytest.raises(ValueError, match="calibration range"):
        PublishGate(0.55, (1.5, 3.0))
