from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from feedrank.learners.evaluation import (
    LoggedBandit,
    LoggingPolicy,
    SuppliedProbabilities,
    TargetPolicyError,
    from_column,
    from_file,
)
from tests.unit.learners.evaluation.synthetic import logged_bandit


def _logs() -> LoggedBandit:
    return logged_bandit(
        np.array([0, 0, 1]),
        np.array([0, 1, 0]),
        np.array([0.5, 0.5, 0.25]),
        np.zeros(3),
        numeric={"target_probability": np.array([0.1, 0.2, 0.3]), "activity": np.ones(3)},
    )


def test_a_column_of_the_logs_is_the_target_and_leaves_the_features() -> None:
    logs, target = from_column(_logs(), "target_probability")
    np.testing.assert_allclose(target.probabilities(logs), [0.1, 0.2, 0.3])
    assert set(logs.context_numeric) == {"activity"}
    with pytest.raises(TargetPolicyError, match="no numeric column 'nope'"):
        from_column(_logs(), "nope")


def test_probabilities_outside_zero_one_are_refused_with_their_lines() -> None:
    logs = _logs()
    logs.context_numeric["target_probability"][2] = 1.5
    with pytest.raises(TargetPolicyError, match="line 4"):
        from_column(logs, "target_probability")


def test_a_file_joins_by_decision_and_position(tmp_path: Path) -> None:
    path = tmp_path / "target.csv"
    path.write_text("decision_id,position,target_probability\nd1,0,0.7\nd0,1,0.2\nd0,0,0.9\n")
    np.testing.assert_allclose(from_file(path, _logs()).probabilities(_logs()), [0.9, 0.2, 0.7])


def test_a_file_joins_by_line(tmp_path: Path) -> None:
    path = tmp_path / "target.csv"
    path.write_text("line,p\n4,0.3\n2,0.1\n3,0.2\n")
    target = from_file(path, _logs(), column="p")
    np.testing.assert_allclose(target.probabilities(_logs()), [0.1, 0.2, 0.3])


def test_a_file_missing_rows_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "target.csv"
    path.write_text("decision_id,position,target_probability\nd0,0,0.9\n")
    with pytest.raises(TargetPolicyError, match="no target probability for 2 logged rows"):
        from_file(path, _logs())


def test_supplied_probabilities_must_match_the_rows() -> None:
    with pytest.raises(TargetPolicyError, match="2 target probabilities for 3 logged rows"):
        SuppliedProbabilities(np.array([0.1, 0.2])).probabilities(_logs())
    np.testing.assert_allclose(LoggingPolicy().probabilities(_logs()), [0.5, 0.5, 0.25])
