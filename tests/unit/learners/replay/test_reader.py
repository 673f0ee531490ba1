from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from feedrank.learners.replay import ReplayFormatError, read_replay

TS = 1_764_000_000_000
HEADER = "timestamp,user_id,post_id,position,propensity,reward,country,activity,item_age"


def write_csv(tmp_path: Path, *lines: str, header: str = HEADER) -> Path:
    path = tmp_path / "logs.csv"
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def good(post: str = "p1", position: int = 0, reward: str = "1") -> str:
    return f"{TS},u1,{post},{position},0.5,{reward},US,1.5,3"


def test_good_rows_load_with_features(tmp_path: Path) -> None:
    log = read_replay(write_csv(tmp_path, good(), good("p2", reward="0")))
    assert log.errors == []
    assert log.total_rows == log.loaded_rows == 2
    first = log.rows[0]
    assert (first.user_id, first.post_id, first.position) == ("u1", "p1", 0)
    assert (first.propensity, first.reward, first.event_time_ms) == (0.5, 1.0, TS)
    assert first.context.numeric == {"activity": 1.5}
    assert first.context.categorical == {"country": "US"}
    assert first.item.numeric == {"age": 3.0}
    # Without a decision_id column every row is its own decision, named by its line.
    assert len(log.decisions) == 2
    assert log.decisions[0].decision_id.endswith("-2")
    assert read_replay(write_csv(tmp_path, good())).decisions[0].decision_id.startswith("replay-")


@pytest.mark.parametrize(
    ("line", "column", "message"),
    [
        (f"{TS},u1,p1,0,,1,US,1,1", "propensity", "missing"),
        (f"{TS},u1,p1,0,-0.2,1,US,1,1", "propensity", "(0, 1]"),
        (f"{TS},u1,p1,0,0,1,US,1,1", "propensity", "(0, 1]"),
        (f"{TS},u1,p1,0,1.5,1,US,1,1", "propensity", "(0, 1]"),
        (f"{TS},u1,p1,0,nan,1,US,1,1", "propensity", "finite"),
        (f"{TS},u1,p1,0,inf,1,US,1,1", "propensity", "finite"),
        ("yesterday,u1,p1,0,0.5,1,US,1,1", "timestamp", "not a timestamp"),
        ("2025-11-24T16:00:00,u1,p1,0,0.5,1,US,1,1", "timestamp", "no time zone"),
        ("17,u1,p1,0,0.5,1,US,1,1", "timestamp", "plausible"),
        (f"{TS},,p1,0,0.5,1,US,1,1", "user_id", "missing"),
        (f"{TS},u1, ,0,0.5,1,US,1,1", "post_id", "missing"),
        (f"{TS},u1,p1,0,0.5,lots,US,1,1", "reward", "number"),
        (f"{TS},u1,p1,0,0.5,-1,US,1,1", "reward", ">= 0"),
        (f"{TS},u1,p1,-1,0.5,1,US,1,1", "position", "whole number"),
        (f"{TS},u1,p1,1.5,0.5,1,US,1,1", "position", "whole number"),
        (f"{TS},u1,p1,0,0.5,1,US,inf,1", "activity", "finite"),
        (f"{TS},u1,p1,0,0.5", None, "fields"),
    ],
)
def test_a_bad_row_is_rejected_with_its_line_and_the_rest_load(
    tmp_path: Path, line: str, column: str | None, message: str
) -> None:
    log = read_replay(write_csv(tmp_path, good(), line, good("p3")))
    assert log.loaded_rows == 2
    assert [row.line for row in log.rows] == [2, 4]
    assert len(log.errors) == 1
    error = log.errors[0]
    assert (error.line, error.column) == (3, column)
    assert message in error.message
    assert str(error).startswith("line 3")


def test_iso_timestamps_with_a_zone_are_accepted(tmp_path: Path) -> None:
    log = read_replay(write_csv(tmp_path, "2025-11-24T16:00:00Z,u1,p1,0,0.5,1,US,1,1"))
    expected = datetime(2025, 11, 24, 16, tzinfo=UTC).timestamp() * 1000
    assert log.rows[0].event_time_ms == expected


def test_rows_group_into_decisions_by_decision_id(tmp_path: Path) -> None:
    header = "decision_id,timestamp,user_id,post_id,position,propensity,reward,country"
    path = write_csv(
        tmp_path,
        f"d1,{TS},u1,p2,1,0.4,0,US",
        f"d1,{TS},u1,p1,0,0.5,1,US",
        f"d2,{TS},u2,p1,0,0.5,0,DE",
        f"d1,{TS},u1,p3,1,0.4,0,US",  # position 1 again
        f"d1,{TS},u9,p4,2,0.4,0,US",  # another user
        f"d2,{TS},u2,p1,1,0.5,0,DE",  # post shown twice
        f"d2,{TS},u2,p5,2,0.5,0,FR",  # context differs
        f",{TS},u2,p6,3,0.5,0,DE",  # no decision id
        header=header,
    )
    log = read_replay(path)
    assert [(d.decision_id, [r.post_id for r in d.rows]) for d in log.decisions] == [
        ("d1", ["p1", "p2"]),
        ("d2", ["p1"]),
    ]
    assert [error.line for error in log.errors] == [5, 6, 7, 8, 9]
    assert "repeats line 2" in log.errors[0].message
    assert "user_id: not the same as on line 2" in log.errors[1].message
    assert "already shown at line 4" in log.errors[2].message
    assert "context features: not the same as on line 4" in log.errors[3].message
    assert log.errors[4].column == "decision_id"


def test_per_row_columns_may_differ_within_a_decision(tmp_path: Path) -> None:
    header = "decision_id,timestamp,user_id,post_id,position,propensity,reward,target"
    path = write_csv(
        tmp_path, f"d1,{TS},u1,p1,0,0.5,1,0.2", f"d1,{TS},u1,p2,1,0.5,0,0.7", header=header
    )
    assert len(read_replay(path).errors) == 1  # as a context feature it must not differ
    log = read_replay(path, per_row_columns=["target"])
    assert log.errors == []
    assert [row.item.numeric for row in log.rows] == [{"target": 0.2}, {"target": 0.7}]
    assert log.rows[0].context.numeric == {}


def test_optional_columns(tmp_path: Path) -> None:
    header = "timestamp,user_id,post_id,position,propensity,reward,reward_type,reward_timestamp"
    path = write_csv(
        tmp_path,
        f"{TS},u1,p1,0,0.5,12.5,dwell,{TS + 5000}",
        f"{TS},u1,p1,0,0.5,1,,",
        f"{TS},u1,p1,0,0.5,1,frown,",
        f"{TS},u1,p1,0,0.5,1,like,{TS - 1}",
        header=header,
    )
    log = read_replay(path)
    assert [(r.reward_type, r.reward_time_ms) for r in log.rows] == [
        ("dwell", TS + 5000),
        ("like", TS),
    ]
    assert [(e.line, e.column) for e in log.errors] == [
        (4, "reward_type"),
        (5, "reward_timestamp"),
    ]


def test_numeric_looking_columns_with_text_are_categorical(tmp_path: Path) -> None:
    header = "timestamp,user_id,post_id,position,propensity,reward,zip"
    path = write_csv(tmp_path, f"{TS},u1,p1,0,0.5,1,02134", f"{TS},u1,p2,0,0.5,1,N1", header=header)
    assert [row.context.categorical for row in read_replay(path).rows] == [
        {"zip": "02134"},
        {"zip": "N1"},
    ]


def test_a_file_without_required_columns_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ReplayFormatError, match="missing required columns: propensity"):
        read_replay(write_csv(tmp_path, header="timestamp,user_id,post_id,position,reward"))
    text = tmp_path / "logs.txt"
    text.write_text(HEADER + "\n")
    with pytest.raises(ReplayFormatError, match="suffix"):
        read_replay(text)
    assert read_replay(text, "csv").total_rows == 0


def test_parquet_rows_are_validated_the_same_way(tmp_path: Path) -> None:
    when = datetime.fromtimestamp(TS / 1000, tz=UTC)
    table = pa.table(
        {
            "timestamp": pa.array([when, when, when, None], pa.timestamp("ms", tz="UTC")),
            "user_id": ["u1", "u1", None, "u1"],
            "post_id": ["p1", "p2", "p3", "p4"],
            "position": [0, 1, 0, 0],
            "propensity": [0.5, 1.5, 0.5, 0.5],
            "reward": [1.0, 0.0, 0.0, 1.0],
            "country": ["US", "US", "US", "US"],
            "activity": [1.0, 2.0, 3.0, 4.0],
            "is_new": [True, False, True, True],
        }
    )
    path = tmp_path / "logs.parquet"
    pq.write_table(table, path)
    log = read_replay(path)
    assert log.total_rows == 4
    assert [row.post_id for row in log.rows] == ["p1"]
    assert log.rows[0].event_time_ms == TS
    assert log.rows[0].context.numeric == {"activity": 1.0, "is_new": 1.0}
    assert log.rows[0].context.categorical == {"country": "US"}
    assert [(e.line, e.column) for e in log.errors] == [
        (2, "propensity"),
        (3, "user_id"),
        (4, "timestamp"),
    ]


def test_parquet_naive_timestamps_are_rejected(tmp_path: Path) -> None:
    naive = datetime(2025, 11, 24, 16)  # noqa: DTZ001 (the point of the test)
    table = pa.table(
        {
            "timestamp": pa.array([naive], pa.timestamp("ms")),
            "user_id": ["u1"],
            "post_id": ["p1"],
            "position": [0],
            "propensity": [0.5],
            "reward": [1.0],
        }
    )
    path = tmp_path / "logs.parquet"
    pq.write_table(table, path)
    log = read_replay(path)
    assert log.loaded_rows == 0
    assert "no time zone" in log.errors[0].message


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "logs.csv"
    path.write_bytes((HEADER + "\n").encode() + b"\xff\xfe,u1\n")
    with pytest.raises(ReplayFormatError, match="UTF-8"):
        read_replay(path)
