"""Rank over a real gRPC server, fuzzed with hypothesis (issue 20): raw bytes, and well
formed requests with arbitrary field values. Every call is answered OK or refused with
INVALID_ARGUMENT (its bad field named), never UNKNOWN or INTERNAL, and every refusal is
counted. The backend stands in for the ranking pipeline: what is fuzzed is the request
path in front of it (parsing and the contract's checks in ``queries.build_query``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import cast

import grpc
import pytest
from grpc_health.v1 import health
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feedrank.core.clock import ManualClock
from feedrank.core.service_errors import call_violations
from feedrank.core.settings import ExploreSettings
from feedrank.explore import metrics
from feedrank.explore.deadline import Deadline
from feedrank.explore.grpc_service import build_server
from feedrank.explore.queries import RankedPost, RankQuery, RankResult
from feedrank.v1 import ranking_pb2

FUZZ = settings(
    max_examples=int(os.environ.get("FEEDRANK_FUZZ_EXAMPLES", "200")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
ANSWERS = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT}


class ServingBackend:
    def rank(self, query: RankQuery, deadline: Deadline) -> RankResult:
        return RankResult("d1", "v1", "stable", (RankedPost("p1", 0, 0.5, 0.5),))

    def arm_of(self, user_id: str) -> str:
        return "stable"


@pytest.fixture(scope="module")
def channel() -> Iterator[grpc.Channel]:
    server, port = build_server(
        ServingBackend(),
        ExploreSettings(),
        ManualClock(1_764_000_000_000),
        health.HealthServicer(),
        address="127.0.0.1:0",
        reuse_port=False,
    )
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as opened:
        yield opened
    server.stop(None)


def refused() -> float:
    return float(metrics.RANK_REQUESTS.labels(code="INVALID_ARGUMENT", arm="stable")._value.get())


def call(channel: grpc.Channel, payload: bytes) -> tuple[grpc.StatusCode, int, float]:
    """Rank on ``payload`` as it is: the status, how many bad fields the refusal named,
    and how many refusals were counted meanwhile."""
    rank: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
        "/feedrank.v1.Ranking/Rank"  # no serializers: the fuzzed bytes go as they are
    )
    before = refused()
    try:
        rank(payload, timeout=10)
    except grpc.RpcError as error:
        failure = cast(grpc.Call, error)
        return failure.code(), len(call_violations(failure)), refused() - before
    return grpc.StatusCode.OK, 0, refused() - before


def assert_answered_or_refused(outcome: tuple[grpc.StatusCode, int, float]) -> None:
    code, violations, counted = outcome
    assert code in ANSWERS, outcome
    if code == grpc.StatusCode.OK:
        assert (violations, counted) == (0, 0.0)
    else:  # a refusal names its bad field and is counted
        assert violations > 0, outcome
        assert counted == 1.0, outcome


@FUZZ
@given(payload=st.binary(max_size=300))
def test_raw_bytes_are_answered_or_refused(channel: grpc.Channel, payload: bytes) -> None:
    assert_answered_or_refused(call(channel, payload))


requests = st.builds(
    ranking_pb2.RankRequest,
    user_id=st.text(max_size=300),
    limit=st.integers(min_value=-(2**31), max_value=2**31 - 1),
    context=st.builds(
        ranking_pb2.RankContext,
        request_time_ms=st.integers(min_value=-(2**63), max_value=2**63 - 1),
        language=st.text(max_size=12),
        country=st.text(max_size=4),
        surface=st.text(max_size=20),
        numeric=st.dictionaries(
            st.text(max_size=10), st.floats(allow_nan=True, allow_infinity=True), max_size=4
        ),
    ),
)


@FUZZ
@given(request=requests)
def test_any_field_values_are_answered_or_refused(
    channel: grpc.Channel, request: ranking_pb2.RankRequest
) -> None:
    assert_answered_or_refused(call(channel, request.SerializeToString()))
