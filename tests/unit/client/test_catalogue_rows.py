"""Catalogue files to events: three kinds, three formats, bad rows by line and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from feedrank.client import (
    CatalogueFileError,
    CatalogueKind,
    LoadedRow,
    RowError,
    catalogue_events,
    open_rows,
    row_event,
)
from feedrank.core.feature_schema import CONTENT_DIM
from feedrank.v1 import catalogue_pb2

TS = 1_764_000_000_000
NOW = 1_764_000_123_456
EMBEDDING = [round(0.01 * index, 2) for index in range(CONTENT_DIM)]


def load(path: Path, kind: CatalogueKind) -> list[LoadedRow | RowError]:
    with open_rows(path) as source:
        return list(catalogue_events(source, kind, clock=lambda: NOW))


def events(results: list[LoadedRow | RowError]) -> list[Any]:
    return [result.event for result in results if isinstance(result, LoadedRow)]


def errors(results: list[LoadedRow | RowError]) -> list[tuple[int, str | None]]:
    return [(result.line, result.field) for result in results if isinstance(result, RowError)]


def write_jsonl(path: Path, documents: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(document) + "\n" for document in documents))
    return path


def write_parquet(path: Path, columns: dict[str, list[Any]]) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


# Posts -------------------------------------------------------------------------------


def test_csv_posts_with_lists_features_and_a_bad_row(tmp_path: Path) -> None:
    embedding = " ".join(str(value) for value in EMBEDDING)
    path = tmp_path / "posts.csv"
    path.write_text(
        "post_id,creator_id,created_ms,language,country,topics,sensitive,embedding,ts_ms,"
        "quality,label\n"
        f"p1,c1,{TS},en,us,cats|dogs,false,{embedding},{TS},0.9,fun\n"
        f"p2,c1,not-a-time,en,,cats,false,,,,\n"
        f"p3,c2,2025-11-24T16:00:00Z,EN,,,true,,,,\n"
    )
    results = load(path, "posts")
    assert errors(results) == [(3, "created_ms")]
    first, third = events(results)
    assert first.op == catalogue_pb2.ENTITY_OP_UPSERT
    assert (first.post_id, first.creator_id, first.country) == ("p1", "c1", "US")
    assert list(first.topics) == ["cats", "dogs"]
    assert list(first.embedding) == pytest.approx(EMBEDDING)
    assert first.features["quality"].number == pytest.approx(0.9)
    assert first.features["label"].text == "fun"
    assert first.ts_ms == TS
    assert third.sensitive
    assert third.language == "en"
    assert third.created_ms == TS
    assert third.ts_ms == NOW  # no ts_ms: the clock's now
    assert not third.features  # empty cells are skipped


def test_csv_line_numbers_count_the_header_blank_lines_and_multiline_cells(
    tmp_path: Path,
) -> None:
    path = tmp_path / "posts.csv"
    path.write_text(
        "post_id,creator_id,created_ms,language,note\n"
        f'p1,c1,{TS},en,"two\nlines"\n'
        "\n"
        f"p2,c1,{TS},english!,x\n"
        f"p3,c1,{TS}\n"
        f"p4,c1,{TS},en,ok\n"
    )
    results = load(path, "posts")
    assert errors(results) == [(5, "language"), (6, None)]
    assert [result.line for result in results if isinstance(result, LoadedRow)] == [2, 7]
    message = next(result.message for result in results if isinstance(result, RowError))
    assert "BCP-47" in message


def test_csv_comma_separated_embedding_and_topic_weights(tmp_path: Path) -> None:
    path = tmp_path / "posts.csv"
    embedding = ",".join(str(value) for value in EMBEDDING)
    path.write_text(
        "post_id,creator_id,created_ms,language,topics,topic_weights,embedding\n"
        f'p1,c1,{TS},en,a|b,0.7|0.3,"[{embedding}]"\n'
        f'p2,c1,{TS},en,a|b,0.7,"1,2"\n'
    )
    results = load(path, "posts")
    [post] = events(results)
    assert list(post.topic_weights) == pytest.approx([0.7, 0.3])
    assert len(post.embedding) == CONTENT_DIM
    assert errors(results) == [(3, "topic_weights")]


def test_a_delete_row_carries_only_its_id(tmp_path: Path) -> None:
    path = tmp_path / "posts.csv"
    path.write_text(
        f"op,post_id,creator_id,created_ms,language,ts_ms\ndelete,p1,,,,{TS}\ndelete,p2,c1,,,\n"
    )
    results = load(path, "posts")
    [deleted] = events(results)
    assert deleted.op == catalogue_pb2.ENTITY_OP_DELETE
    assert deleted.post_id == "p1"
    assert errors(results) == [(3, "creator_id")]


def test_jsonl_posts_carry_real_types(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "posts.jsonl",
        [
            {
                "post_id": "p1",
                "creator_id": "c1",
                "created_ms": TS,
                "language": "en",
                "topics": {"cats": 2.0, "dogs": 1.0},
                "embedding": EMBEDDING,
                "features": {"quality": 0.5},
                "zip": "02139",
                "ts_ms": TS,
            },
            {"post_id": "p2", "creator_id": "c1", "created_ms": TS, "language": 7},
        ],
    )
    with path.open("a") as handle:
        handle.write("\n{not json\n[1]\n")
    results = load(path, "posts")
    [post] = events(results)
    assert list(post.topics) == ["cats", "dogs"]
    assert list(post.topic_weights) == [2.0, 1.0]
    assert post.features["quality"].number == 0.5
    assert post.features["zip"].text == "02139"  # typed files keep texts as texts
    assert errors(results) == [(2, "language"), (4, None), (5, None)]


def test_parquet_posts_stream_in_batches_with_row_numbers(tmp_path: Path) -> None:
    rows = 5000  # more than one read batch
    path = write_parquet(
        tmp_path / "posts.parquet",
        {
            "post_id": [f"p{index}" for index in range(rows)],
            "creator_id": ["c1"] * rows,
            "created_ms": [TS] * (rows - 1) + [None],
            "language": ["en"] * rows,
            "topics": [["cats", "dogs"]] * rows,
            "embedding": [EMBEDDING] * rows,
            "likes": list(range(rows)),
        },
    )
    results = load(path, "posts")
    assert errors(results) == [(rows, "created_ms")]
    loaded = events(results)
    assert len(loaded) == rows - 1
    assert loaded[7].features["likes"].number == 7.0
    assert list(loaded[0].topics) == ["cats", "dogs"]


# Users and the graph ---------------------------------------------------------------------


def test_users_in_three_formats(tmp_path: Path) -> None:
    csv_path = tmp_path / "users.csv"
    csv_path.write_text(
        "user_id,language,country,age_bucket,ts_ms,premium\n"
        f"u1,en,US,25-34,{TS},1\n"
        f"u2,en,US,ancient,{TS},\n"
    )
    jsonl_path = write_jsonl(
        tmp_path / "users.ndjson",
        [{"user_id": "u1", "age_bucket": "55+"}, {"op": "delete", "user_id": "u2", "ts_ms": TS}],
    )
    parquet_path = write_parquet(
        tmp_path / "users.parquet", {"user_id": ["u1", ""], "country": ["fr", "de"]}
    )

    csv_results = load(csv_path, "users")
    assert errors(csv_results) == [(3, "age_bucket")]
    [user] = events(csv_results)
    assert (user.user_id, user.age_bucket) == ("u1", "25-34")
    assert user.features["premium"].number == 1.0

    first, deleted = events(load(jsonl_path, "users"))
    assert first.age_bucket == "55+"
    assert deleted.op == catalogue_pb2.ENTITY_OP_DELETE

    parquet_results = load(parquet_path, "users")
    assert [event.country for event in events(parquet_results)] == ["FR"]
    assert errors(parquet_results) == [(2, "user_id")]


def test_graph_rows_in_three_formats(tmp_path: Path) -> None:
    csv_path = tmp_path / "graph.csv"
    csv_path.write_text(
        f"op,user_id,target_id,ts_ms\nfollow,u1,c1,{TS}\nlike,u1,c2,{TS}\nblock,u1,u1,{TS}\n"
    )
    jsonl_path = write_jsonl(
        tmp_path / "graph.json",
        [{"op": "hide_creator", "user_id": "u1", "target_id": "c9"}, {"op": "follow"}],
    )
    parquet_path = write_parquet(
        tmp_path / "graph.parquet",
        {"op": ["unfollow"], "user_id": ["u1"], "target_id": ["c1"], "ts_ms": [TS]},
    )
    csv_results = load(csv_path, "graph")
    [edge] = events(csv_results)
    assert (edge.op, edge.user_id, edge.target_id) == (catalogue_pb2.GRAPH_OP_FOLLOW, "u1", "c1")
    assert errors(csv_results) == [(3, "op"), (4, "target_id")]
    jsonl_results = load(jsonl_path, "graph")
    assert [event.op for event in events(jsonl_results)] == [catalogue_pb2.GRAPH_OP_HIDE_CREATOR]
    assert errors(jsonl_results) == [(2, "user_id")]
    [unfollow] = events(load(parquet_path, "graph"))
    assert unfollow.op == catalogue_pb2.GRAPH_OP_UNFOLLOW


def test_row_event_reads_integer_ids_and_names_unknown_graph_fields() -> None:
    user = row_event({"user_id": 42, "language": "en"}, "users", now_ms=NOW, typed=True)
    assert isinstance(user, catalogue_pb2.UserEvent)
    assert user.user_id == "42"
    with pytest.raises(ValueError, match="graph rows have only") as raised:
        row_event(
            {"op": "follow", "user_id": "u", "target_id": "t", "weight": 1}, "graph", now_ms=NOW
        )
    assert getattr(raised.value, "field", None) == "weight"


# Files that cannot be read at all ----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "kind", "message"),
    [
        ("posts.txt", "post_id\n", "posts", "cannot tell the format"),
        ("posts.csv", "", "posts", "empty"),
        ("posts.csv", "creator_id,language\nc1,en\n", "posts", "missing required columns"),
        ("posts.csv", "post_id,post_id\np1,p2\n", "posts", "duplicate column names"),
        ("graph.csv", "op,user_id,target_id,weight\n", "graph", "unknown graph columns"),
        ("posts.json", '[{"post_id": "p1"}]\n', "posts", "JSON array"),
        ("posts.parquet", "not parquet at all", "posts", "not a Parquet file"),
    ],
)
def test_unreadable_files_raise_catalogue_file_error(
    tmp_path: Path, name: str, content: str, kind: CatalogueKind, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(CatalogueFileError, match=message):
        load(path, kind)


def test_a_missing_file_raises_catalogue_file_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogueFileError, match="does not exist"):
        open_rows(tmp_path / "nothing.csv")


def test_bytes_that_are_not_utf8_spoil_only_their_row(tmp_path: Path) -> None:
    path = tmp_path / "posts.csv"
    path.write_bytes(
        b"post_id,creator_id,created_ms,language\n"
        + f"p1,c\xff,{TS},en\n".encode("latin-1")
        + f"p2,c1,{TS},en\n".encode()
    )
    with open_rows(path) as source:
        results = list(catalogue_events(source, "posts", clock=lambda: NOW))
        assert source.done == source.total == path.stat().st_size
    assert errors(results) == [(2, "creator_id")]
    assert [event.post_id for event in events(results)] == ["p2"]
