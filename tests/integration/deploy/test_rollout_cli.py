"""`feedrank rollout …` end to end against a real Deploy gRPC server."""

from __future__ import annotations

import json
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from typer.testing import CliRunner

from feedrank.cli.main import app
from feedrank.learners.online.publish_gate import PublishGate
from feedrank.registry import LocalModelRegistry
from tests.integration.deploy.conftest import RunningDeploy
from tests.support.deploy import publish_versions


def test_health_and_reflection(deploy_server: RunningDeploy) -> None:
    channel = grpc.insecure_channel(deploy_server.address)
    health: Any = health_pb2_grpc.HealthStub(channel)
    reply = health.Check(health_pb2.HealthCheckRequest(service="feedrank.v1.Deploy"), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflection: Any = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
    )
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert "feedrank.v1.Deploy" in names


def test_a_whole_rollout_from_the_command_line(deploy_server: RunningDeploy) -> None:
    first, second, _ = deploy_server.versions
    code, output = deploy_server.cli("models", "--json")
    assert code == 0
    assert [model["version"] for model in json.loads(output)] == deploy_server.versions

    code, output = deploy_server.cli("start", first, "--json")
    assert code == 0
    assert json.loads(output)["phase"] == "stable"
    assert deploy_server.cli("status")[0] == 0  # healthy

    code, output = deploy_server.cli("start", second, "--steps", "10%,0.5,1", "--json")
    assert code == 0
    started = json.loads(output)
    assert (started["phase"], started["canary_weight"], started["steps"]) == (
        "progressing",
        0.1,
        [0.1, 0.5, 1.0],
    )
    code, output = deploy_server.cli("status")
    assert code == 1  # progressing is not healthy (yet)
    assert "progressing" in output
    assert second in output

    code, output = deploy_server.cli("set-weight", "0.3", "--json")
    assert (code, json.loads(output)["phase"], json.loads(output)["canary_weight"]) == (
        0,
        "paused",
        0.3,
    )
    assert json.loads(deploy_server.cli("resume", "--json")[1])["phase"] == "progressing"
    assert json.loads(deploy_server.cli("promote", "--json")[1])["canary_weight"] == 0.5
    code, output = deploy_server.cli("promote", "--full", "--json")
    promoted = json.loads(output)
    assert (promoted["phase"], promoted["stable_version"]) == ("promoted", second)
    assert deploy_server.cli("status", "--json")[0] == 0

    code, output = deploy_server.cli("models")
    assert code == 0
    assert "stable" in output
    assert "auc=" in output

    code, output = deploy_server.cli("history", "--json")
    phases = [entry["phase"] for entry in json.loads(output)]
    assert phases == ["stable", "progressing", "paused", "progressing", "progressing", "promoted"]
    # The audit trail: every change by the operator whose token the CLI sent.
    assert {entry["actor"] for entry in json.loads(output)} == {"local-operator"}
    code, output = deploy_server.cli("history")
    assert code == 0
    assert "Rollout history" in output
    assert "local-op" in output  # the By column (a narrow terminal folds the name)


def test_errors_are_one_clear_line_or_json(deploy_server: RunningDeploy) -> None:
    first = deploy_server.versions[0]
    code, output = deploy_server.cli("start", "v0099")
    assert code == 1
    assert "NOT_FOUND" in output
    assert "v0099" in output
    assert len(output.strip().splitlines()) == 1

    code, output = deploy_server.cli("pause", "--json")
    error = json.loads(output)["error"]
    assert (code, error["code"]) == (1, "FAILED_PRECONDITION")
    assert "no rollout in progress" in error["message"]

    deploy_server.cli("start", first)
    code, output = deploy_server.cli(
        "start", deploy_server.versions[1], "--steps", "0.5,0.2,1", "--json"
    )
    error = json.loads(output)["error"]
    assert (code, error["code"]) == (1, "INVALID_ARGUMENT")
    assert error["violations"][0]["field"] == "steps"

    deploy_server.cli("start", deploy_server.versions[1])
    code, output = deploy_server.cli("set-weight", "1.5", "--json")
    assert json.loads(output)["error"]["violations"][0]["field"] == "canary_weight"

    code, output = deploy_server.cli("set-weight", "lots")
    assert code == 2  # a usage error, caught before any call
    assert "not a share" in output


def test_unreachable_service_says_so(deploy_server: RunningDeploy) -> None:
    result = CliRunner().invoke(
        app, ["rollout", "status", "--address", "127.0.0.1:1", "--rpc-timeout", "1"]
    )
    assert result.exit_code == 1
    assert "cannot reach the deploy service at 127.0.0.1:1" in result.output


def test_status_watch_times_out_unless_healthy(deploy_server: RunningDeploy) -> None:
    first, second, _ = deploy_server.versions
    deploy_server.cli("start", first)
    deploy_server.cli("start", second)
    code, output = deploy_server.cli("status", "--watch", "--timeout", "0.5", "--interval", "0.1")
    assert code == 1
    assert "timed out" in output
    deploy_server.cli("abort", "--reason", "testing")
    code, output = deploy_server.cli("status", "--watch", "--timeout", "5")
    assert code == 1  # aborted: degraded, ends the watch at once
    assert "testing" in output


def test_a_version_its_learner_failed_is_refused_and_shown(deploy_server: RunningDeploy) -> None:
    first = deploy_server.versions[0]
    failed_metrics = {
        "rolling_auc": 0.51,
        "calibration": 1.0,
        **PublishGate(0.55, (0.33, 3.0)).judge({"rolling_auc": 0.51, "calibration": 1.0}).metrics,
    }
    registry = LocalModelRegistry(deploy_server.settings.paths.registry, clock=deploy_server.clock)
    (failed,) = publish_versions(registry, 1, failed_metrics)
    assert deploy_server.cli("start", first, "--json")[0] == 0

    code, output = deploy_server.cli("start", failed, "--json")
    assert code == 1, output  # aborted: not healthy
    refused = json.loads(output)
    assert refused["phase"] == "aborted"
    assert refused["stable_version"] == first
    assert refused["canary_weight"] == 0.0
    assert "publish gate failed: rolling AUC 0.510 (floor 0.55)" in refused["message"]

    code, output = deploy_server.cli("models", "--json")
    assert code == 0
    gates = {model["version"]: model["publish_gate"] for model in json.loads(output)}
    assert gates[failed] == "failed"
    assert gates[first] == ""  # published by no learner's gate
    code, output = deploy_server.cli("models")
    assert code == 0
    assert "FAILED" in output
