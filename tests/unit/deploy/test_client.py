"""The deploy service's client: failed calls become DeployCallFailed with what was said."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from feedrank.core.service_errors import FieldViolation, ServiceError, to_rpc_status
from feedrank.deploy.client import DeployCallFailed, DeployClient, field_violations
from tests.support.grpc_calls import FakeCall


class InvalidWeight(ServiceError):
    status_code = grpc.StatusCode.INVALID_ARGUMENT


def _invalid_weight_call() -> FakeCall:
    status = to_rpc_status(
        InvalidWeight("invalid canary_weight: above 1", (FieldViolation("canary_weight", "> 1"),))
    )
    return FakeCall(grpc.StatusCode.INVALID_ARGUMENT, status.details, status.trailing_metadata)


def _raising(error: grpc.RpcError) -> Any:
    def method(request: object, timeout: float, metadata: object = ()) -> object:
        raise error

    return method


def test_a_call_returns_the_reply_within_the_deadline() -> None:
    client = DeployClient("127.0.0.1:1", timeout_s=2.5, token="t0k")
    seen: list[tuple[object, float, object]] = []

    def method(request: object, timeout: float, metadata: object) -> str:
        seen.append((request, timeout, metadata))
        return "reply"

    assert client.call(method, "request") == "reply"
    assert seen == [("request", 2.5, (("authorization", "Bearer t0k"),))]


def test_a_refused_call_carries_its_code_message_and_field_violations() -> None:
    client = DeployClient("127.0.0.1:1", timeout_s=1.0)
    with pytest.raises(DeployCallFailed) as caught:
        client.call(_raising(_invalid_weight_call()), object())
    failure = caught.value
    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "canary_weight" in failure.message
    assert failure.to_dict() == {
        "code": "INVALID_ARGUMENT",
        "message": failure.message,
        "violations": [{"field": "canary_weight", "description": "> 1"}],
    }


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED])
def test_an_unreachable_service_says_where_it_was_looked_for(code: grpc.StatusCode) -> None:
    client = DeployClient("127.0.0.1:1", timeout_s=1.0)
    failure = client.failure(FakeCall(code, "connection refused"))
    assert failure.message == (
        "cannot reach the deploy service at 127.0.0.1:1 (connection refused); "
        "is `feedrank deploy` running?"
    )
    assert failure.violations == []


def test_an_rpc_error_that_is_not_a_call_is_unknown() -> None:
    failure = DeployClient("127.0.0.1:1", timeout_s=1.0).failure(grpc.RpcError("broken"))
    assert failure.code == grpc.StatusCode.UNKNOWN
    assert failure.message == "broken"
    assert field_violations(grpc.RpcError("broken")) == []
