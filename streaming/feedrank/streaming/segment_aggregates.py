"""Per 5-minute window and per segment of users: impressions and prompt rewards.

The join marks each impressions row and each attributed reward with its user's position
segment under the deploy salt (``JoinConfig.segment_salt``; see
:func:`feedrank.core.arms.position_segment`). These windows sum them per segment,
whatever version or arm served the user, into ``SegmentAggregate`` records on the
metrics topic (kind header ``segment-aggregate``, key the segment). The deploy service
sums the segments a canary holds over the day before a rollout: the pre-period whose
difference the canary analysis takes off (``feedrank.deploy.pre_period``).

They share the engagement aggregates' input view and their one INSERT (one sink, one
transactional id prefix); see :mod:`feedrank.streaming.aggregates`.
"""

from __future__ import annotations

from typing import Any

from pyflink.table import DataTypes
from pyflink.table.udf import udf

from feedrank.core import codecs
from feedrank.core.arms import POSITION_SEGMENTS
from feedrank.v1 import events_pb2

SEGMENT_ENCODER = "feedrank_encode_segment"
SEGMENT_COLUMNS = (
    "window_end_ms",
    "window_ms",
    "segment",
    "impressions",
    "prompt_engagements",
    "prompt_reports",
    "prompt_blocks",
    "prompt_hides",
)


def encode_segment_row(*fields: Any) -> bytes:
    """The encoder UDF's body: one segment window row → serialised ``SegmentAggregate``."""
    values = dict(zip(SEGMENT_COLUMNS, (int(value or 0) for value in fields), strict=True))
    window_ms = values.pop("window_ms")
    end_ms = values.pop("window_end_ms")
    return codecs.encode(
        events_pb2.SegmentAggregate(
            window_start_ms=end_ms - window_ms,
            window_end_ms=end_ms,
            segments=POSITION_SEGMENTS,
            **values,
        )
    )


def segment_encoder() -> Any:
    """A scalar Python UDF (once per segment window row: at most 100 per window)."""
    return udf(encode_segment_row, result_type=DataTypes.BYTES())


def segments_select(
    *, tumble: str, window_end_ms: str, window_ms: int, prompt: Any, headers: str
) -> str:
    """One ``SegmentAggregate`` record per window and segment, keyed by the segment.

    ``tumble`` is the windowing table function over the input view, ``window_end_ms``
    the window end's expression, ``prompt(column)`` the sum of a column over prompt rows
    and ``headers`` the record headers (as :mod:`feedrank.streaming.aggregates` makes
    them for its own records).
    """
    sums = ",\n    ".join(
        [
            "SUM(CAST(impressions AS BIGINT)) AS impressions",
            *(
                f"{prompt(column)} AS prompt_{column}"
                for column in ("engagements", "reports", "blocks", "hides")
            ),
        ]
    )
    arguments = ", ".join(
        f"CAST({window_ms} AS BIGINT)" if name == "window_ms" else name for name in SEGMENT_COLUMNS
    )
    return f"""SELECT
  CAST(CAST(segment AS STRING) AS BYTES),
  {SEGMENT_ENCODER}({arguments}),
  {headers}
FROM (
  SELECT {window_end_ms} AS window_end_ms, segment,
    {sums}
  FROM {tumble}
  WHERE kind IN ('impressions', 'reward') AND segment >= 0
  GROUP BY window_start, window_end, window_time, segment
)"""
