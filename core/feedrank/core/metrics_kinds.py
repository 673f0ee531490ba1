"""The record kinds on ``feedrank.metrics``, told apart by a header: part of the contract.

The join's aggregates write them (``feedrank.streaming``) and the deploy service and the
metrics exporter read them; both sides import the names from here (the streaming side
pulls in PyFlink, which readers must not need).
"""

from __future__ import annotations

METRICS_KIND_HEADER = "feedrank.metrics.kind"
AGGREGATE_KIND = "engagement-aggregate"  # EngagementAggregate, per version and arm
TOP_POSTS_KIND = "top-posts"  # JSON, the most engaged posts of a window
SEGMENT_KIND = "segment-aggregate"  # SegmentAggregate, per segment of users
