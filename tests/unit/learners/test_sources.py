"""Parquet and CSV exports of labelled examples round-trip; bad rows name their line."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedrank.learners.sources import ExampleSourceError, read_examples, write_examples
from tests.unit.learners.factories import simulated_examples


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_export_round_trips(tmp_path: Path, suffix: str) -> None:
    examples = list(simulated_examples(50)[:12])
    path = tmp_path / f"examples{suffix}"
    write_examples(examples, path)
    loaded = read_examples(path)
    assert [e.decision_id for e in loaded] == [e.decision_id for e in examples]
    assert [e.engaged for e in loaded] == [e.engaged for e in examples]
    assert dict(loaded[3].user_features.categorical) == dict(examples[3].user_features.categorical)
    assert loaded[3].post_features.numeric["impressions"] == pytest.approx(
        examples[3].post_features.numeric["impressions"]
    )
    assert list(loaded[3].post_features.embedding) == pytest.approx(
        list(examples[3].post_features.embedding), abs=1e-6
    )
    for before, after in zip(examples, loaded, strict=True):  # sparse topic weights included
        assert dict(after.post_features.numeric) == pytest.approx(
            dict(before.post_features.numeric)
        )


def test_a_bad_row_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "examples.csv"
    write_examples(list(simulated_examples(50)[:3]), path)
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace(",", ",oops", 1).replace(lines[2].split(",")[3], "not-a-time", 1)
    path.write_text("\n".join(lines))
    with pytest.raises(ExampleSourceError, match="line 3"):
        read_examples(path)


def test_missing_columns_are_named(tmp_path: Path) -> None:
    path = tmp_path / "examples.csv"
    path.write_text("decision_id,user_id\nd,u\n")
    with pytest.raises(ExampleSourceError, match="post_id"):
        read_examples(path)


def test_compact_examples_are_not_exported_without_their_static_features(tmp_path: Path) -> None:
    (example,) = simulated_examples(5)[:1]
    example.catalogue_version = 1_764_000_000_000
    with pytest.raises(ExampleSourceError, match="compact"):
        write_examples([example], tmp_path / "examples.csv")
