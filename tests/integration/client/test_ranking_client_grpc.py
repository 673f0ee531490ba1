"""RankingClient against a real explore gRPC server: feeds, and typed errors."""

from __future__ import annotations

import pytest

from feedrank.client import (
    DeadlineExceeded,
    InvalidRequest,
    RankingClient,
    Unavailable,
)
from tests.integration.explore.conftest import START_MS, RankingServer
from tests.support.kafka import free_port


def test_rank_returns_a_feed(ranking_server: RankingServer) -> None:
    with RankingClient(ranking_server.address, timeout_s=10) as client:
        client.wait_ready(timeout_s=10)
        feed = client.rank(
            "u42", limit=7, language="en", surface="explore", request_time_ms=START_MS
        )
    assert feed.decision_id
    assert feed.model_version == "v0-init"
    assert feed.arm == "stable"
    assert [item.position for item in feed.items] == list(range(7))
    assert len(set(feed.post_ids)) == 7
    assert all(0.0 < item.propensity <= 1.0 for item in feed.items)


@pytest.mark.parametrize(
    ("user_id", "limit", "language", "field"),
    [("", 5, None, "user_id"), ("u1", -1, None, "limit"), ("u1", 0, "x", "context.language")],
)
def test_an_invalid_request_raises_invalid_request_with_the_servers_details(
    ranking_server: RankingServer, user_id: str, limit: int, language: str | None, field: str
) -> None:
    client = RankingClient(ranking_server.address, timeout_s=10)
    with client, pytest.raises(InvalidRequest) as raised:
        client.rank(user_id, limit=limit, language=language)
    assert field in raised.value.violations
    assert field in raised.value.details
    assert raised.value.code is not None
    assert raised.value.code.name == "INVALID_ARGUMENT"


def test_a_tiny_deadline_raises_deadline_exceeded(ranking_server: RankingServer) -> None:
    with RankingClient(ranking_server.address) as client:
        client.wait_ready(timeout_s=10)
        with pytest.raises(DeadlineExceeded):
            client.rank("deadline-user", limit=50, timeout_s=0.001)


def test_no_server_raises_unavailable() -> None:
    with RankingClient(f"127.0.0.1:{free_port()}", timeout_s=5) as client:
        with pytest.raises(Unavailable):
            client.wait_ready(timeout_s=0.2)
        with pytest.raises(Unavailable) as raised:
            client.rank("u1")
    assert raised.value.code is not None
    assert raised.value.code.name == "UNAVAILABLE"
