"""The records the aggregates write: an :class:`EngagementAggregate` per window row (its
encoder UDF) and the ``top-posts`` JSON records' parser (see
:mod:`feedrank.streaming.aggregates`)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from pyflink.table import DataTypes
from pyflink.table.udf import udf

from feedrank.core import codecs
from feedrank.v1 import events_pb2


@dataclass(frozen=True)
class WindowAggregate:
    """One window row of the aggregate query, in the order the encoder UDF receives it."""

    window_end_ms: int
    window_ms: int
    model_version: str
    arm: str
    impressions: int
    engagements: int
    dwell_seconds: float
    reports: int
    blocks: int
    hides: int
    late_rewards: int
    dangling_rewards: int
    prompt_engagements: int
    prompt_reports: int
    prompt_blocks: int
    prompt_hides: int

    @classmethod
    def from_sql(cls, *fields: Any) -> WindowAggregate:
        """From the UDF's arguments; SQL NULLs (a SUM over nothing) become 0 or ''."""
        values: dict[str, Any] = {}
        for name, value in zip(WINDOW_ROW_FIELDS, fields, strict=True):
            if name in TEXT_FIELDS:
                values[name] = value or ""
            elif name == "dwell_seconds":
                values[name] = float(value or 0.0)
            else:
                values[name] = int(value or 0)
        return cls(**values)


WINDOW_ROW_FIELDS = tuple(field.name for field in dataclasses.fields(WindowAggregate))
TEXT_FIELDS = frozenset({"model_version", "arm"})


def engagement_rate(engagements: int, impressions: int) -> float:
    """Engagements per impression in a window; 0 when there were no impressions."""
    return engagements / impressions if impressions > 0 else 0.0


def to_proto(row: WindowAggregate) -> events_pb2.EngagementAggregate:
    return events_pb2.EngagementAggregate(
        window_start_ms=row.window_end_ms - row.window_ms,
        window_end_ms=row.window_end_ms,
        model_version=row.model_version,
        arm=row.arm,
        impressions=row.impressions,
        engagements=row.engagements,
        engagement_rate=engagement_rate(row.engagements, row.impressions),
        dwell_seconds=row.dwell_seconds,
        reports=row.reports,
        blocks=row.blocks,
        hides=row.hides,
        late_rewards=row.late_rewards,
        dangling_rewards=row.dangling_rewards,
        prompt_engagements=row.prompt_engagements,
        prompt_reports=row.prompt_reports,
        prompt_blocks=row.prompt_blocks,
        prompt_hides=row.prompt_hides,
    )


def encode_window_row(*fields: Any) -> bytes:
    """The encoder UDF's body: one window row → serialised ``EngagementAggregate``."""
    return codecs.encode(to_proto(WindowAggregate.from_sql(*fields)))


def aggregate_encoder() -> Any:
    """A scalar Python UDF (called once per window row, so per-row calls are cheap)."""
    return udf(encode_window_row, result_type=DataTypes.BYTES())


@dataclass(frozen=True)
class TopPost:
    """One ranked post of a window, as carried by a ``top-posts`` record."""

    window_start_ms: int
    window_end_ms: int
    rank: int
    post_id: str
    engagements: int


def parse_top_post(value: bytes) -> TopPost:
    """Parse a ``top-posts`` record value (JSON); raises EventDecodeError when malformed."""
    try:
        document = json.loads(value)
        return TopPost(**{name: document[name] for name in TopPost.__dataclass_fields__})
    except (ValueError, TypeError, KeyError) as error:
        raise codecs.EventDecodeError(f"not a top-posts record: {error}") from error
