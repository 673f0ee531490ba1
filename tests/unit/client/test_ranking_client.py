"""RankingClient's request building and response mapping (the gRPC path: integration)."""

from __future__ import annotations

import pytest

from feedrank.client import Feed, FeedItem, InvalidRequest, RankingClient
from feedrank.client.ranking import feed_of, rank_request
from feedrank.v1 import ranking_pb2


def test_context_is_sent_only_when_given() -> None:
    bare = rank_request("u1", 0)
    assert not bare.HasField("context")
    request = rank_request(
        "u1", 20, language="en", country="US", surface="home", request_time_ms=5, numeric=None
    )
    assert request.limit == 20
    assert request.context == ranking_pb2.RankContext(
        request_time_ms=5, language="en", country="US", surface="home"
    )
    with_numeric = rank_request("u1", 0, numeric={"battery": 0.5})
    assert dict(with_numeric.context.numeric) == {"battery": 0.5}


def test_a_limit_beyond_int32_is_refused_locally() -> None:
    with pytest.raises(InvalidRequest) as raised:
        rank_request("u1", 2**40)
    assert set(raised.value.violations) == {"limit"}


def test_feed_of_a_response() -> None:
    response = ranking_pb2.RankResponse(
        decision_id="d1",
        model_version="v3",
        arm="canary",
        items=[
            ranking_pb2.RankedItem(post_id="p9", position=0, score=2.5, propensity=0.9),
            ranking_pb2.RankedItem(post_id="p4", position=1, score=1.5, propensity=0.1),
        ],
    )
    feed = feed_of(response)
    assert feed == Feed(
        "d1", "v3", "canary", (FeedItem("p9", 0, 2.5, 0.9), FeedItem("p4", 1, 1.5, 0.1))
    )
    assert feed.post_ids == ["p9", "p4"]


def test_a_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        RankingClient(timeout_s=0)
