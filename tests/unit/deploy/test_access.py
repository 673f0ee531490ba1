"""The deploy control plane's access rules, over a real gRPC server: anonymous and viewer
callers may read but not change a rollout; each refusal has its code and is counted."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from grpc_health.v1 import health

from feedrank.core.settings import TlsSettings, load_settings
from feedrank.deploy import metrics
from feedrank.deploy.access import Credentials, credentials_path, operator_token
from feedrank.deploy.client import DeployCallFailed, DeployClient
from feedrank.deploy.control import DeployControl
from feedrank.deploy.service import build_server
from feedrank.deploy.state import Phase, Rollout
from feedrank.stack.certificates import make_certificates
from feedrank.v1 import deploy_pb2


class RecordingControl:
    """Stands in for the control plane: lists nothing, records the aborts it is asked for
    and who asked."""

    def __init__(self) -> None:
        self.aborts: list[str] = []
        self.actors: list[str] = []
        self.last_analysis = None
        self.config = type("Config", (), {"holdout_share": 0.0})()

    def models(self) -> list[object]:
        return []

    def abort(self, reason: str = "", *, actor: str = "") -> Rollout:
        self.aborts.append(reason)
        self.actors.append(actor)
        return Rollout(phase=Phase.STABLE, actor=actor)


@pytest.fixture
def tokens(tmp_path: Path) -> Path:
    path = tmp_path / "deploy" / "credentials.json"
    Credentials.load_or_create(path)
    return path


@pytest.fixture
def served(tokens: Path) -> Iterator[tuple[str, RecordingControl]]:
    control = RecordingControl()
    server, port = build_server(
        cast(DeployControl, control),
        health.HealthServicer(),
        address="127.0.0.1:0",
        credentials=Credentials.load_or_create(tokens),
    )
    server.start()
    yield f"127.0.0.1:{port}", control
    server.stop(None)


def counted(code: str) -> float:
    return float(metrics.REQUESTS.labels(method="AbortRollout", code=code)._value.get())


def abort(address: str, token: str | None) -> None:
    client = DeployClient(address, 10, token)
    client.call(client.stub.AbortRollout, deploy_pb2.AbortRolloutRequest(reason="test"))


def refused(address: str, token: str | None, code: grpc.StatusCode) -> str:
    """Abort with ``token``: refused with ``code``, counted once; the refusal's message."""
    before = counted(code.name)
    with pytest.raises(DeployCallFailed) as failure:
        abort(address, token)
    assert failure.value.code == code
    assert counted(code.name) == before + 1
    return failure.value.message


def test_the_credentials_file_is_made_once_and_private(tokens: Path) -> None:
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o600
    first = tokens.read_text()
    Credentials.load_or_create(tokens)
    assert tokens.read_text() == first  # never rotated behind the CLI's back


def test_an_anonymous_change_is_unauthenticated_and_counted(
    served: tuple[str, RecordingControl],
) -> None:
    address, control = served
    assert "operator's token" in refused(address, None, grpc.StatusCode.UNAUTHENTICATED)
    refused(address, "not-a-token", grpc.StatusCode.UNAUTHENTICATED)
    assert control.aborts == []


def test_a_viewer_may_read_but_not_change(
    served: tuple[str, RecordingControl], tokens: Path
) -> None:
    address, control = served
    viewer = Credentials.load_or_create(tokens).token_of("viewer")
    client = DeployClient(address, 10, viewer)
    assert list(client.call(client.stub.ListModels, deploy_pb2.ListModelsRequest()).models) == []
    anonymous = DeployClient(address, 10)
    anonymous.call(anonymous.stub.ListModels, deploy_pb2.ListModelsRequest())
    assert "local-viewer" in refused(address, viewer, grpc.StatusCode.PERMISSION_DENIED)
    assert control.aborts == []


def test_an_operator_changes_the_rollout(
    served: tuple[str, RecordingControl], tokens: Path
) -> None:
    address, control = served
    settings = load_settings(paths={"state_dir": tokens.parent.parent})
    assert credentials_path(settings) == tokens
    abort(address, operator_token(settings))  # what `feedrank rollout` sends
    assert control.aborts == ["test"]
    assert control.actors == ["local-operator"]  # the token's name goes into the history
    told = load_settings(paths={"state_dir": tokens.parent.parent}, deploy={"token": "given"})
    assert operator_token(told) == "given"
    assert "given" not in repr(told.deploy)  # a secret: never printed


def test_a_client_certificate_stands_in_for_the_token(tokens: Path, tmp_path: Path) -> None:
    """With mutual TLS, the certificate's common name is the identity: the operator's
    changes the rollout and is recorded as the actor, the viewer's is denied."""
    issued = make_certificates(tmp_path / "certs", clients=("local-operator", "local-viewer"))
    control = RecordingControl()
    server, port = build_server(
        cast(DeployControl, control),
        health.HealthServicer(),
        address="127.0.0.1:0",
        credentials=Credentials.load_or_create(tokens),
        tls=TlsSettings(
            cert_file=issued.server_cert, key_file=issued.server_key, client_ca_file=issued.ca_cert
        ),
    )
    server.start()
    address = f"127.0.0.1:{port}"

    def client_of(name: str) -> DeployClient:
        pair = issued.client(name)
        tls = TlsSettings(
            ca_file=issued.ca_cert, client_cert_file=pair.cert, client_key_file=pair.key
        )
        return DeployClient(address, 10, tls=tls)  # no token: the certificate only

    try:
        operator = client_of("local-operator")
        operator.call(operator.stub.AbortRollout, deploy_pb2.AbortRolloutRequest(reason="tls"))
        assert control.actors == ["local-operator"]
        viewer = client_of("local-viewer")
        with pytest.raises(DeployCallFailed) as denied:
            viewer.call(viewer.stub.AbortRollout, deploy_pb2.AbortRolloutRequest(reason="no"))
        assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED
        assert control.aborts == ["tls"]
    finally:
        server.stop(None)


def test_an_operator_s_unreadable_request_is_invalid_and_counted(
    served: tuple[str, RecordingControl], tokens: Path
) -> None:
    address, control = served
    token = Credentials.load_or_create(tokens).token_of("operator")
    before = counted("INVALID_ARGUMENT")
    with grpc.insecure_channel(address) as channel:
        abort_bytes: Any = channel.unary_unary("/feedrank.v1.Deploy/AbortRollout")
        with pytest.raises(grpc.RpcError) as failure:
            abort_bytes(
                b"\xff\xff\xff", timeout=5, metadata=(("authorization", f"Bearer {token}"),)
            )
    assert isinstance(failure.value, grpc.Call)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert counted("INVALID_ARGUMENT") == before + 1
    assert control.aborts == []
