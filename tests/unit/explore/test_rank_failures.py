"""Failures inside Rank, over a real gRPC server: each gets its documented status, never
UNKNOWN, and is counted in ``feedrank_rank_requests_total``.

The backend stands in for the ranking pipeline (the adapter is what is under test): one
raises what the feature store raises for a time older than its history, one fails in a
way nobody foresaw.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc
import pytest
from grpc_health.v1 import health

from feedrank.core.clock import ManualClock
from feedrank.core.service_errors import call_violations
from feedrank.core.settings import ExploreSettings
from feedrank.explore import metrics
from feedrank.explore.deadline import Deadline
from feedrank.explore.grpc_service import build_server
from feedrank.explore.queries import RankQuery, RankResult
from feedrank.features.point_in_time import HistoryNotRetained
from feedrank.v1 import ranking_pb2, ranking_pb2_grpc

SERVER_NOW_MS = 1_000_000
HISTORY_FROM_MS = 5_000_000

# A server whose backend raises the exception; the channel to it.
ServeFailing = Callable[[Exception], grpc.Channel]


class FailingBackend:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def rank(self, query: RankQuery, deadline: Deadline) -> RankResult:
        raise self.error

    def arm_of(self, user_id: str) -> str:
        return "stable"


@pytest.fixture
def serve_failing() -> Iterator[ServeFailing]:
    servers: list[grpc.Server] = []
    channels: list[grpc.Channel] = []

    def start(error: Exception) -> grpc.Channel:
        server, port = build_server(
            FailingBackend(error),
            ExploreSettings(),
            ManualClock(SERVER_NOW_MS),
            health.HealthServicer(),
            address="127.0.0.1:0",
            reuse_port=False,
        )
        server.start()
        servers.append(server)
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        channels.append(channel)
        return channel

    yield start
    for channel in channels:
        channel.close()
    for server in servers:
        server.stop(None)


def failed_calls(code: str) -> float:
    return float(metrics.RANK_REQUESTS.labels(code=code, arm="stable")._value.get())


def test_a_server_clock_behind_the_feature_history_is_invalid_argument_and_counted(
    serve_failing: ServeFailing,
) -> None:
    channel = serve_failing(HistoryNotRetained(SERVER_NOW_MS, HISTORY_FROM_MS))
    stub = ranking_pb2_grpc.RankingStub(channel)
    before = failed_calls("INVALID_ARGUMENT")
    with pytest.raises(grpc.RpcError) as failure:
        stub.Rank(ranking_pb2.RankRequest(user_id="u-new"), timeout=10)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    [violation] = call_violations(failure.value)
    assert violation.field == "context.request_time_ms"
    assert "not set" in violation.description
    assert str(HISTORY_FROM_MS) in violation.description
    assert failed_calls("INVALID_ARGUMENT") == before + 1


def test_a_request_time_before_the_history_is_invalid_argument(serve_failing: ServeFailing) -> None:
    stub = ranking_pb2_grpc.RankingStub(serve_failing(HistoryNotRetained(2_000, HISTORY_FROM_MS)))
    request = ranking_pb2.RankRequest(
        user_id="u1", context=ranking_pb2.RankContext(request_time_ms=2_000)
    )
    with pytest.raises(grpc.RpcError) as failure:
        stub.Rank(request, timeout=10)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    [violation] = call_violations(failure.value)
    assert violation.description.startswith("2000 is before the feature history")


def test_an_unforeseen_failure_is_internal_never_unknown_and_counted(
    serve_failing: ServeFailing, caplog: pytest.LogCaptureFixture
) -> None:
    stub = ranking_pb2_grpc.RankingStub(serve_failing(KeyError("post-7")))
    before = failed_calls("INTERNAL")
    with pytest.raises(grpc.RpcError) as failure:
        stub.Rank(ranking_pb2.RankRequest(user_id="u1"), timeout=10)
    assert failure.value.code() == grpc.StatusCode.INTERNAL
    assert "KeyError" in (failure.value.details() or "")
    assert failed_calls("INTERNAL") == before + 1
    assert "Rank for user 'u1' failed unexpectedly" in caplog.text


@pytest.mark.parametrize("garbage", [b"\xff\xff\xff", b"\x0a\x05ab", b"\x12\x80"])
def test_bytes_that_are_no_rank_request_are_invalid_argument_and_counted(
    serve_failing: ServeFailing, garbage: bytes
) -> None:
    channel = serve_failing(AssertionError("the backend is never reached"))
    rank_raw: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
        "/feedrank.v1.Ranking/Rank"  # no serializers: bytes in, bytes out
    )
    before = failed_calls("INVALID_ARGUMENT")
    with pytest.raises(grpc.RpcError) as failure:
        rank_raw(garbage, timeout=10)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    [violation] = call_violations(failure.value)
    assert violation.field == "request"
    assert "not a feedrank.v1.RankRequest" in violation.description
    assert failed_calls("INVALID_ARGUMENT") == before + 1


def test_a_well_formed_request_still_reaches_the_backend(serve_failing: ServeFailing) -> None:
    stub = ranking_pb2_grpc.RankingStub(serve_failing(KeyError("reached")))
    with pytest.raises(grpc.RpcError) as failure:
        stub.Rank(ranking_pb2.RankRequest(user_id="u1"), timeout=10)
    assert "KeyError" in (failure.value.details() or "")
