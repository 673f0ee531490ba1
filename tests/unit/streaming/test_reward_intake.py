"""The reward intake's pure parts: per-record decoding, the pandas batch and the SQL."""

from __future__ import annotations

import json

import pandas as pd  # type: ignore[import-untyped]  # no pandas-stubs in the venv
import pyarrow as pa  # type: ignore[import-untyped]
import pytest
from pyflink.table.types import to_arrow_type

from feedrank.core import codecs
from feedrank.streaming.kafka_tables import KafkaSource
from feedrank.streaming.reward_intake import (
    DECODED_REWARD_TYPE,
    STAGE,
    VALID_REWARD_COLUMNS,
    DecodedReward,
    RewardIntakeOptions,
    SourceRecord,
    dead_letter_insert,
    decode_batch,
    decode_record,
    describe_error,
    source_table_ddl,
    valid_rewards_view,
)
from feedrank.v1 import events_pb2

TS = 1_764_000_000_000
NOW = 1_765_000_000_000


def _record(value: bytes | None, headers: codecs.Headers = None) -> SourceRecord:
    return SourceRecord("feedrank.rewards", 2, 41, b"u-1", value, headers)


def _json(**fields: object) -> bytes:
    document = {"decision_id": "d", "post_id": "p", "user_id": "u", "type": "dwell", "ts_ms": TS}
    return json.dumps(document | fields).encode()


def test_valid_protobuf_and_json_decode_to_the_same_row() -> None:
    reward = events_pb2.Reward(
        decision_id="d", post_id="p", user_id="u", type=codecs.REWARD_TYPES["like"], ts_ms=TS
    )
    expected = DecodedReward(None, "d", "p", "u", "like", 1.0, TS, None)
    assert decode_record(_record(codecs.encode(reward)), NOW) == expected
    as_json = codecs.encode_reward_json(reward)
    assert decode_record(_record(as_json, [("content-type", b"application/json")]), NOW) == expected


def test_the_content_type_header_decides_the_format() -> None:
    decoded = decode_record(_record(_json(value=7.5), [("Content-Type", b"application/json")]), NOW)
    assert (decoded.reward_type, decoded.reward_value) == ("dwell", 7.5)
    protobuf_claimed = decode_record(
        _record(_json(), {"content-type": "application/x-protobuf"}), NOW
    )
    assert protobuf_claimed.error is not None


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (_json(type="superlike"), "type: unknown reward type"),
        (_json(user_id=None), "user_id: reward is missing"),
        (_json(value=-2), "value: reward value -2.0"),
        (_json(ts_ms=12), "ts_ms: ts_ms=12"),
        (_json(ts_ms=10**30), "unexpected ValueError"),
        (None, "empty reward record"),
    ],
)
def test_malformed_records_become_dead_letters(value: bytes | None, fragment: str) -> None:
    decoded = decode_record(_record(value), NOW, stage="test-stage")
    assert decoded.error is not None
    assert fragment in decoded.error
    assert decoded[1:7] == (None,) * 6
    assert decoded.dead_letter is not None
    letter = codecs.decode(events_pb2.DeadLetter, decoded.dead_letter)
    assert letter == events_pb2.DeadLetter(
        source_topic="feedrank.rewards",
        source_partition=2,
        source_offset=41,
        key=b"u-1",
        value=value or b"",
        error=decoded.error,
        failed_at_ms=NOW,
        stage="test-stage",
    )


def test_error_text_names_the_field_first() -> None:
    assert describe_error(codecs.EventDecodeError("bad", field="ts_ms")) == "ts_ms: bad"
    assert describe_error(codecs.EventDecodeError("bad")) == "bad"
    assert describe_error(RecursionError("deep")) == "unexpected RecursionError: deep"


def test_batch_keeps_nulls_and_converts_to_the_declared_arrow_row() -> None:
    frame = decode_batch(
        pd.Series([_json(value=2.5), b"\xff", None]),
        pd.Series(["application/json", None, None]),
        pd.Series([b"k1", None, b"k3"]),
        pd.Series(["t", "t", "t"]),
        pd.Series([0, 1, 2], dtype="int32"),
        pd.Series([10, 11, 12], dtype="int64"),
    )
    assert list(frame.columns) == list(DecodedReward._fields)
    assert frame["error"].isnull().tolist() == [True, False, False]
    assert frame.loc[0, "reward_value"] == 2.5
    assert frame.loc[0, "ts_ms"] == TS
    assert frame.loc[1, "ts_ms"] is None
    arrow_row = to_arrow_type(DECODED_REWARD_TYPE)
    for field in arrow_row:
        column = frame[field.name]
        array = pa.Array.from_pandas(column, mask=column.isnull(), type=field.type)
        assert array.null_count == int(column.isnull().sum())
    letter = codecs.decode(events_pb2.DeadLetter, frame.loc[1, "dead_letter"])
    assert (letter.source_partition, letter.source_offset, letter.key) == (1, 11, b"")
    assert letter.stage == STAGE


def test_empty_batch_has_every_column() -> None:
    empty = pd.Series([], dtype=object)
    frame = decode_batch(empty, empty, empty, empty, empty, empty)
    assert list(frame.columns) == list(DecodedReward._fields)
    assert len(frame) == 0


def test_source_ddl_declares_metadata_the_decoder_and_a_watermark() -> None:
    options = RewardIntakeOptions(
        source_table="src", decode_function="dec`x", watermark_delay_ms=2500
    )
    ddl = source_table_ddl(options, KafkaSource("feedrank.rewards", "h:1", "g", bounded=True))
    assert ddl.startswith("CREATE TEMPORARY TABLE `src` (")
    for column in ("`topic` STRING NOT NULL", "`partition` INT NOT NULL", "`offset` BIGINT NOT"):
        assert column in ddl
    content_type = "CAST(`headers`['content-type'] AS STRING)"
    call = f"`dec``x`(`value`, {content_type}, `key`, `topic`, `partition`, `offset`)"
    assert ddl.count(call) == 2
    assert "WATERMARK FOR `reward_time` AS `reward_time` - INTERVAL '2.500' SECOND" in ddl
    assert "'scan.bounded.mode' = 'latest-offset'" in ddl


def test_dead_letter_insert_names_the_record_and_error_in_headers() -> None:
    sql = dead_letter_insert(RewardIntakeOptions(dlq_table="dlq", stage="it's"))
    assert sql.startswith("INSERT INTO `dlq`")
    for header in (
        codecs.DLQ_HEADER_TOPIC,
        codecs.DLQ_HEADER_PARTITION,
        codecs.DLQ_HEADER_OFFSET,
        codecs.DLQ_HEADER_ERROR,
        codecs.DLQ_HEADER_STAGE,
    ):
        assert f"'{header}', CAST(" in sql
    assert "CAST('it''s' AS BYTES)" in sql
    assert sql.endswith("WHERE `decoded`.`error` IS NOT NULL")


def test_valid_view_selects_every_valid_column() -> None:
    sql = valid_rewards_view(RewardIntakeOptions(valid_view="v"))
    assert sql.startswith("CREATE TEMPORARY VIEW `v` AS")
    for name in VALID_REWARD_COLUMNS[:-1]:
        assert f"`decoded`.`{name}` AS `{name}`" in sql
    assert sql.endswith("WHERE `decoded`.`error` IS NULL")
