"""Abort sends canary traffic to 0 at once; undo restores the previous stable."""

from __future__ import annotations

from feedrank.v1 import deploy_pb2
from tests.integration.deploy.conftest import RunningDeploy


def plan(deploy_server: RunningDeploy) -> dict[str, tuple[str, float]]:
    reply = deploy_server.stub().GetServingPlan(deploy_pb2.GetServingPlanRequest(), timeout=5)
    assert reply.salt == deploy_server.settings.deploy.salt
    return {arm.arm: (arm.model_version, arm.weight) for arm in reply.arms}


def test_abort_sends_canary_weight_to_zero_immediately(deploy_server: RunningDeploy) -> None:
    stub = deploy_server.stub()
    first, second, _ = deploy_server.versions
    assert plan(deploy_server) == {}  # nothing deployed yet: workers keep their own model
    stub.StartRollout(deploy_pb2.StartRolloutRequest(version=first), timeout=5)
    stub.StartRollout(deploy_pb2.StartRolloutRequest(version=second, steps=[0.25, 1.0]), timeout=5)
    assert plan(deploy_server) == {"stable": (first, 0.75), "canary": (second, 0.25)}

    reply = stub.AbortRollout(deploy_pb2.AbortRolloutRequest(reason="pager"), timeout=5)
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
