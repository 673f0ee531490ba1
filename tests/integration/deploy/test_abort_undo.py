"""Abort sends canary traffic to 0 at once; undo restores the previous stable."""

from __future__ import annotations

import json
from pathlib import Path

from feedrank.core.clock import ManualClock
from feedrank.deploy.server import DeployServer
from feedrank.registry import LocalModelRegistry
from feedrank.v1 import deploy_pb2
from tests.integration.deploy.conftest import START_MS, RunningDeploy, deploy_settings
from tests.support.deploy import publish_versions


def plan(deploy_server: RunningDeploy) -> dict[str, tuple[str, float]]:
    reply = deploy_server.stub().GetServingPlan(deploy_pb2.GetServingPlanRequest(), timeout=5)
    assert reply.salt == deploy_server.settings.deploy.salt
    return {arm.arm: (arm.model_version, arm.weight) for arm in reply.arms}


def test_abort_sends_canary_weight_to_zero_immediately(deploy_server: RunningDeploy) -> None:
    stub = deploy_server.stub()
    first, second, _ = deploy_server.versions
    assert plan(deploy_server) == {}  # nothing deployed yet: workers keep their own model
    operator = deploy_server.operator
    stub.StartRollout(deploy_pb2.StartRolloutRequest(version=first), timeout=5, metadata=operator)
    stub.StartRollout(
        deploy_pb2.StartRolloutRequest(version=second, steps=[0.25, 1.0]),
        timeout=5,
        metadata=operator,
    )
    assert plan(deploy_server) == {"stable": (first, 0.75), "canary": (second, 0.25)}

    reply = stub.AbortRollout(
        deploy_pb2.AbortRolloutRequest(reason="pager"), timeout=5, metadata=operator
    )
    assert reply.phase == deploy_pb2.ROLLOUT_PHASE_ABORTED
    assert reply.canary_weight == 0.0
    # The very next read of the plan already has no canary.
    assert plan(deploy_server) == {"stable": (first, 1.0)}


def test_undo_restores_the_previous_stable(deploy_server: RunningDeploy) -> None:
    first, second, third = deploy_server.versions
    for version in (first, second):
        deploy_server.cli("start", version)
    deploy_server.cli("promote", "--full")
    assert plan(deploy_server) == {"stable": (second, 1.0)}

    code, output = deploy_server.cli("undo")
    assert code == 0
    assert f"{first} is stable again" in output
    assert plan(deploy_server) == {"stable": (first, 1.0)}

    code, _ = deploy_server.cli("undo", "--to", third)
    assert code == 0
    assert plan(deploy_server) == {"stable": (third, 1.0)}


def test_the_holdout_keeps_its_share_on_the_first_version_through_rollouts(
    tmp_path: Path,
) -> None:
    clock = ManualClock(START_MS)
    settings = deploy_settings(tmp_path / "state", holdout_share=0.1)
    first, second, third = publish_versions(
        LocalModelRegistry(settings.paths.registry, clock=clock), 3
    )
    server = DeployServer(settings, clock, port=0, analysis=False)
    server.start()
    try:
        running = RunningDeploy(server, settings, clock, [first, second, third])
        running.cli("start", first)
        assert plan(running) == {"holdout": (first, 0.1), "stable": (first, 0.9)}
        running.cli("start", second, "--steps", "0.5,1.0")
        assert plan(running) == {
            "holdout": (first, 0.1),
            "stable": (first, 0.45),
            "canary": (second, 0.45),
        }
        running.cli("promote", "--full")
        running.cli("start", third)
        running.cli("promote", "--full")
        assert plan(running) == {"holdout": (first, 0.1), "stable": (third, 0.9)}
        code, output = running.cli("status", "--json")
        assert code == 0, output
        status = json.loads(output)
        assert (status["holdout_version"], status["holdout_weight"]) == (first, 0.1)
        code, output = running.cli("models")
        assert code == 0, output
        assert "holdout" in output
    finally:
        server.stop(grace_s=0.5)
