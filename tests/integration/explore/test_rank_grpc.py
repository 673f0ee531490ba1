"""Ranking.Rank against a real gRPC server, logging to the real broker."""

from __future__ import annotations

import math
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from feedrank.core import codecs
from feedrank.core.compact_features import (
    ITEM_LAYOUTS,
    POST_VALUES_LAYOUT,
    full_user_features,
    is_compact_user,
)
from feedrank.core.feature_schema import CONTENT_DIM
from feedrank.explore.app import ServingState
from feedrank.explore.grpc_service import set_serving
from feedrank.learners.feature_rejoin import PostFeatureRejoin
from feedrank.v1 import ranking_pb2
from tests.integration.explore.conftest import START_MS, RankingServer
from tests.support.kafka import CommittedReader


def rank(server: RankingServer, request: ranking_pb2.RankRequest) -> ranking_pb2.RankResponse:
    response: ranking_pb2.RankResponse = server.stub().Rank(request, timeout=10)
    return response


def test_rank_returns_limit_items_and_logs_the_decision(
    ranking_server: RankingServer, consume: CommittedReader, serving_state: ServingState
) -> None:
    response = rank(
        ranking_server,
        ranking_pb2.RankRequest(
            user_id="u42",
            limit=20,
            context=ranking_pb2.RankContext(request_time_ms=START_MS, surface="explore"),
        ),
    )
    assert response.decision_id
    assert response.model_version == "v0-init"
    assert response.arm == "stable"
    assert len(response.items) == 20
    assert [item.position for item in response.items] == list(range(20))
    assert len({item.post_id for item in response.items}) == 20
    assert all(0.0 < item.propensity <= 1.0 for item in response.items)
    assert all(math.isfinite(item.score) for item in response.items)

    assert ranking_server.service.decision_log is not None
    assert ranking_server.service.decision_log.flush(10) == 0
    [record] = consume(ranking_server.decisions_topic, 1)
    assert record.key() == b"u42"
    decision = codecs.decode_decision(record.value())
    assert decision.decision_id == response.decision_id
    assert decision.event_time_ms == START_MS
    assert decision.model_version == "v0-init"
    assert is_compact_user(decision.user_features)  # typed; read back whole
    user = full_user_features(decision.user_features, decision.event_time_ms)
    assert user.categorical["language"]
    assert user.numeric["known"] == 1.0
    assert user.numeric["as_of_ms"] == START_MS
    assert [item.post_id for item in decision.items] == [i.post_id for i in response.items]
    assert [item.propensity for item in decision.items] == [i.propensity for i in response.items]
    # Compact: each shown item's catalogue version and the impression's own values (by
    # the layout: age_hours derived); the rest re-joins from the catalogue at that
    # version (here the ranker's own).
    assert list(decision.item_feature_names) == [POST_VALUES_LAYOUT]
    for item in decision.items:
        assert item.catalogue_version > 0
        assert len(item.features.values) == len(ITEM_LAYOUTS[POST_VALUES_LAYOUT].values)
        assert not item.features.embedding
    rejoined = PostFeatureRejoin(serving_state.catalogue).shown_items(decision)
    assert len(rejoined) == len(decision.items)
    for _, features in rejoined:  # impression-time features, for the shown items only
        assert len(features.embedding) == CONTENT_DIM
        assert "age_hours" in features.numeric


def test_default_limit_and_cold_start_user(ranking_server: RankingServer) -> None:
    response = rank(
        ranking_server,
        ranking_pb2.RankRequest(
            user_id="someone-new",
            context=ranking_pb2.RankContext(request_time_ms=START_MS, language="es", country="MX"),
        ),
    )
    assert len(response.items) == ranking_server.settings.explore.default_limit


def violations(error: grpc.RpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    found = {}
    for detail in status.details:
        bad_request = error_details_pb2.BadRequest()
        assert detail.Unpack(bad_request)
        found.update({item.field: item.description for item in bad_request.field_violations})
    return found


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"user_id": "", "limit": 5}, "user_id"),
        ({"user_id": "u1", "limit": -1}, "limit"),
        ({"user_id": "u1", "limit": 100_000}, "limit"),
        (
            {"user_id": "u1", "context": ranking_pb2.RankContext(numeric={"x": math.nan})},
            "context.numeric[x]",
        ),
        (
            {"user_id": "u1", "context": ranking_pb2.RankContext(numeric={"y": math.inf})},
            "context.numeric[y]",
        ),
        ({"user_id": "u1", "context": ranking_pb2.RankContext(language="x")}, "context.language"),
    ],
)
def test_bad_requests_get_invalid_argument_with_field_details(
    ranking_server: RankingServer, request_fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        rank(ranking_server, ranking_pb2.RankRequest(**request_fields))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in violations(raised.value)
    assert field in (raised.value.details() or "")


def test_oversize_request_is_resource_exhausted(ranking_server: RankingServer) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        rank(ranking_server, ranking_pb2.RankRequest(user_id="u" * 10_000))
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_health_flips_and_no_model_means_unavailable(ranking_server: RankingServer) -> None:
    channel = grpc.insecure_channel(ranking_server.address)
    health_stub: Any = health_pb2_grpc.HealthStub(channel)
    request = health_pb2.HealthCheckRequest(service="feedrank.v1.Ranking")
    assert health_stub.Check(request).status == health_pb2.HealthCheckResponse.SERVING

    serving = ranking_server.service.slots.current()
    assert serving is not None
    ranking_server.service.unload()
    try:
        with pytest.raises(grpc.RpcError) as raised:
            rank(ranking_server, ranking_pb2.RankRequest(user_id="u1"))
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        ranking_server.service.slots.swap(serving)

    set_serving(ranking_server.health, serving=False)
    assert health_stub.Check(request).status == health_pb2.HealthCheckResponse.NOT_SERVING


def test_one_millisecond_deadline_is_honoured(
    ranking_server: RankingServer, consume: CommittedReader
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        ranking_server.stub().Rank(
            ranking_pb2.RankRequest(user_id="deadline-user", limit=50), timeout=0.001
        )
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # A later request is logged; the expired one never was: its work stopped.
    rank(ranking_server, ranking_pb2.RankRequest(user_id="after-deadline", limit=5))
    assert ranking_server.service.decision_log is not None
    ranking_server.service.decision_log.flush(10)
    logged = consume.read(ranking_server.decisions_topic, at_most=10, timeout_s=10, idle_s=2)
    users = [codecs.decode_decision(record.value()).user_id for record in logged]
    assert "after-deadline" in users
    assert "deadline-user" not in users


def test_reflection_lists_the_services(ranking_server: RankingServer) -> None:
    stub: Any = reflection_pb2_grpc.ServerReflectionStub(
        grpc.insecure_channel(ranking_server.address)
    )
    responses = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = {
        service.name
        for response in responses
        for service in response.list_services_response.service
    }
    assert {"feedrank.v1.Ranking", "grpc.health.v1.Health"} <= names
