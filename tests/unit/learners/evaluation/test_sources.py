"""Choosing where logged data and target probabilities come from for an evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from feedrank.learners.evaluation.sources import load_logs
from feedrank.learners.evaluation.target import per_row_target_columns, supplied_target

TS = 1_764_000_000_000


def _slates(tmp_path: Path) -> Path:
    path = tmp_path / "slates.csv"
    path.write_text(
        "decision_id,timestamp,user_id,post_id,position,propensity,reward,p_new\n"
        f"d1,{TS},u1,a,0,0.5,1,0.25\n"
        f"d1,{TS},u1,b,1,0.5,0,0.75\n"
        f"d2,{TS},u2,c,0,0.5,0,0.5\n"
    )
    return path


def test_a_replay_file_is_loaded_with_the_target_column_per_row(tmp_path: Path) -> None:
    path = _slates(tmp_path)
    loaded = load_logs(
        path,
        kafka=False,
        bootstrap="unused:9092",
        topic="unused",
        per_row_columns=per_row_target_columns("p_new"),
    )
    assert loaded.source == str(path)
    assert loaded.rejected == []
    np.testing.assert_allclose(loaded.logs.item_numeric["p_new"], [0.25, 0.75, 0.5])


@pytest.mark.parametrize("kafka", [True, False])
def test_exactly_one_source_is_needed(tmp_path: Path, kafka: bool) -> None:
    replay_file = _slates(tmp_path) if kafka else None
    with pytest.raises(ValueError, match="give exactly one source: --logs FILE or --from-kafka"):
        load_logs(replay_file, kafka=kafka, bootstrap="unused:9092", topic="unused")


def test_a_target_column_of_the_logs_is_taken_out_of_the_features(tmp_path: Path) -> None:
    logs = load_logs(
        _slates(tmp_path),
        kafka=False,
        bootstrap="unused:9092",
        topic="unused",
        per_row_columns=per_row_target_columns("p_new"),
    ).logs
    data, target = supplied_target(logs, "p_new")
    assert "p_new" not in data.item_numeric
    np.testing.assert_allclose(target.probabilities(data), [0.25, 0.75, 0.5])


def test_a_target_file_is_matched_to_the_logged_rows(tmp_path: Path) -> None:
    target_file = tmp_path / "target.csv"
    target_file.write_text("decision_id,position,p\nd1,0,0.1\nd1,1,0.2\nd2,0,0.3\n")
    assert per_row_target_columns(str(target_file)) == ()
    replay_file = tmp_path / "logs.csv"
    replay_file.write_text(
        "decision_id,timestamp,user_id,post_id,position,propensity,reward\n"
        f"d1,{TS},u1,a,0,0.5,1\nd1,{TS},u1,b,1,0.5,0\nd2,{TS},u2,c,0,0.5,0\n"
    )
    logs = load_logs(replay_file, kafka=False, bootstrap="unused:9092", topic="unused").logs
    data, target = supplied_target(logs, str(target_file), column="p")
    assert data is logs
    np.testing.assert_allclose(target.probabilities(data), [0.1, 0.2, 0.3])
