from __future__ import annotations

from pathlib import Path

import numpy as np

from feedrank.learners.evaluation import from_examples
from feedrank.learners.evaluation.sources import from_replay_file
from feedrank.v1 import events_pb2

TS = 1_764_000_000_000


def test_replay_files_become_rows_sorted_by_decision_and_position(tmp_path: Path) -> None:
    path = tmp_path / "logs.csv"
    path.write_text(
        "decision_id,timestamp,user_id,post_id,position,propensity,reward,country,activity\n"
        f"b,{TS},u2,p9,0,0.5,1,DE,\n"
        f"a,{TS},u1,p2,1,0.5,0,US,2\n"
        f"a,{TS},u1,p1,0,0.25,1,US,2\n"
        f"a,{TS},u1,p3,2,2.0,1,US,2\n"
    )
    loaded = from_replay_file(path)
    logs = loaded.logs
    assert logs.decision_ids == ("b", "a", "a")
    np.testing.assert_array_equal(logs.decision_index, [0, 1, 1])
    np.testing.assert_array_equal(logs.positions, [0, 0, 1])
    np.testing.assert_array_equal(logs.lines, [2, 4, 3])
    np.testing.assert_array_equal(logs.rank_in_decision(), [0, 0, 1])
    np.testing.assert_array_equal(logs.rows_per_decision(), [1, 2])
    np.testing.assert_allclose(logs.context_numeric["activity"], [np.nan, 2.0, 2.0])
    assert logs.context_categorical["country"] == ("DE", "US", "US")
    assert len(loaded.rejected) == 1
    assert loaded.rejected[0].startswith("line 5")


def test_labelled_examples_become_rows() -> None:
    def example(decision: str, position: int, reward: float) -> events_pb2.LabelledExample:
        return events_pb2.LabelledExample(
            decision_id=decision,
            user_id="u1",
            post_id=f"p{position}",
            position=position,
            propensity=0.5,
            reward=reward,
            user_features=events_pb2.FeatureVector(numeric={"activity": 1.0}),
        )

    logs = from_examples([example("d1", 1, 0.0), example("d2", 0, 1.0), example("d1", 0, 1.0)])
    assert logs.decision_ids == ("d1", "d1", "d2")
    np.testing.assert_array_equal(logs.positions, [0, 1, 0])
    np.testing.assert_allclose(logs.rewards, [1.0, 0.0, 1.0])
    np.testing.assert_allclose(logs.context_numeric["activity"], 1.0)
    assert logs.num_decisions == 2


def test_compact_examples_bring_the_post_numbers_they_logged() -> None:
    full = events_pb2.LabelledExample(
        decision_id="d1",
        post_id="p0",
        propensity=0.5,
        post_features=events_pb2.FeatureVector(numeric={"age_hours": 2.0, "sensitive": 0.0}),
    )
    compact = events_pb2.LabelledExample(
        decision_id="d1",
        post_id="p1",
        position=1,
        propensity=0.5,
        catalogue_version=1_764_000_000_000,
        post_feature_names=["age_hours", "impressions"],
        post_features=events_pb2.FeatureVector(values=[3.0, 1.5]),
    )
    logs = from_examples([full, compact])
    np.testing.assert_array_equal(logs.item_numeric["age_hours"], [2.0, 3.0])
    np.testing.assert_array_equal(logs.item_numeric["impressions"], [np.nan, 1.5])
    np.testing.assert_array_equal(logs.item_numeric["sensitive"], [0.0, np.nan])  # not guessed
