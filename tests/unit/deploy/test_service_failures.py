"""An unforeseen failure in the deploy control plane, over a real gRPC server: answered
INTERNAL with what failed, never UNKNOWN, logged and counted per method."""

from __future__ import annotations

from typing import cast

import grpc
import pytest
from grpc_health.v1 import health

from feedrank.deploy import metrics
from feedrank.deploy.access import Credentials
from feedrank.deploy.control import DeployControl
from feedrank.deploy.service import build_server
from feedrank.v1 import deploy_pb2, deploy_pb2_grpc


class BrokenControl:
    """Stands in for the control plane: its registry listing fails unforeseen."""

    def models(self) -> list[object]:
        raise OSError(5, "Input/output error")


def failed(method: str) -> float:
    return float(metrics.REQUESTS.labels(method=method, code="INTERNAL")._value.get())


def test_an_unforeseen_failure_is_internal_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, port = build_server(
        cast(DeployControl, BrokenControl()),
        health.HealthServicer(),
        address="127.0.0.1:0",
        credentials=Credentials({}, {}),
    )
    server.start()
    before = failed("ListModels")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = deploy_pb2_grpc.DeployStub(channel)
            with pytest.raises(grpc.RpcError) as failure:
                stub.ListModels(deploy_pb2.ListModelsRequest(), timeout=10)
    finally:
        server.stop(None)
    assert failure.value.code() == grpc.StatusCode.INTERNAL
    assert "ListModels" in (failure.value.details() or "")
    assert "OSError" in (failure.value.details() or "")
    assert failed("ListModels") == before + 1
    assert "ListModels failed unexpectedly" in caplog.text
