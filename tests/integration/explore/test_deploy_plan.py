"""A worker following ``Deploy.GetServingPlan`` over real gRPC (a tiny in-test servicer)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from feedrank.core.clock import ManualClock
from feedrank.core.settings import load_settings
from feedrank.explore.app import explore_service, worker_backend
from feedrank.explore.plan_follower import PlanFollower
from feedrank.explore.serving_plan import ArmPlan, ServingPlan
from feedrank.explore.traffic_splitter import TrafficSplitter
from feedrank.registry import LocalModelRegistry
from feedrank.v1 import deploy_pb2, deploy_pb2_grpc, ranking_pb2, ranking_pb2_grpc
from tests.support.model_versions import all_posts, publish, small_bundle
from tests.support.serving import served, world_serving_state

START_MS = 1_764_000_000_000


class PlanServicer(deploy_pb2_grpc.DeployServicer):
    """Only GetServingPlan: the contract between the deploy service and explore."""

    def __init__(self, plan: ServingPlan) -> None:
        self.plan = plan
        self.calls = 0
        self._lock = threading.Lock()

    def GetServingPlan(
        self, request: deploy_pb2.GetServingPlanRequest, context: grpc.ServicerContext
    ) -> deploy_pb2.ServingPlan:
        with self._lock:
            self.calls += 1
            return self.plan.to_proto()


@dataclass
class FollowingServer:
    servicer: PlanServicer
    deploy: grpc.Server
    follower: PlanFollower
    stub: ranking_pb2_grpc.RankingStub
    versions: list[str]

    def arms_of(self, users: list[str]) -> dict[str, tuple[str, str]]:
        found = {}
        for user in users:
            response = self.stub.Rank(ranking_pb2.RankRequest(user_id=user, limit=5), timeout=10)
            found[user] = (response.arm, response.model_version)
        return found


def plan(stable: str, canary: str, canary_weight: float) -> ServingPlan:
    arms = (ArmPlan("stable", stable, 1 - canary_weight), ArmPlan("canary", canary, canary_weight))
    return ServingPlan(arms, salt="rollout-1")


@pytest.fixture
def following_server(tmp_path: Path) -> Iterator[FollowingServer]:
    deploy = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    deploy_port = deploy.add_insecure_port("127.0.0.1:0")
    settings = load_settings(
        world={"num_users": 300, "num_creators": 200, "num_posts": 2_000},
        paths={"state_dir": tmp_path / "state", "registry_dir": tmp_path / "registry"},
        explore={
            "deploy_address": f"127.0.0.1:{deploy_port}",
            "plan_poll_interval_s": 0.1,
            "feature_updates": False,  # no broker here: the plan alone
        },
    )
    clock = ManualClock(START_MS)
    state = world_serving_state(settings, clock)
    registry = LocalModelRegistry(settings.paths.registry)
    posts = all_posts(state.store, START_MS)
    versions = [publish(registry, small_bundle(posts, seed)) for seed in (1, 2)]
    # The generated stub declares every Deploy method abstract; this one needs one.
    servicer = PlanServicer(plan(versions[0], versions[1], 0.5))  # type: ignore[abstract]
    deploy_pb2_grpc.add_DeployServicer_to_server(servicer, deploy)
    deploy.start()

    service = explore_service(settings, clock, state, log_decisions=False)
    backend = worker_backend(settings, clock, state, service)  # follows the plan
    try:
        assert backend.follower is not None
        with served(backend, settings, clock) as stub:
            yield FollowingServer(servicer, deploy, backend.follower, stub, versions)
    finally:
        deploy.stop(grace=0).wait()


def test_the_worker_serves_what_get_serving_plan_says(following_server: FollowingServer) -> None:
    server = following_server
    stable, canary = server.versions
    users = [f"u{index}" for index in range(60)]
    splitter = TrafficSplitter({"stable": 0.5, "canary": 0.5}, salt="rollout-1")

    served = server.arms_of(users)  # the plan was applied before serving started
    assert server.servicer.calls >= 1
    expected = {"stable": stable, "canary": canary}
    assert served == {u: (splitter.arm_of(u), expected[splitter.arm_of(u)]) for u in users}

    with server.servicer._lock:  # abort: canary weight to 0, without a restart
        server.servicer.plan = plan(stable, canary, 0.0)
    deadline = time.monotonic() + 30
    while set(server.arms_of(users).values()) != {("stable", stable)}:
        assert time.monotonic() < deadline, "the new weights were not applied"
        time.sleep(0.1)

    server.deploy.stop(grace=0).wait()  # the deploy service goes away: serving goes on
    deadline = time.monotonic() + 30
    while server.follower.status.last_outcome != "plan_error":
        assert time.monotonic() < deadline, "the follower never noticed"
        time.sleep(0.05)
    assert set(server.arms_of(users).values()) == {("stable", stable)}
    assert "Deploy.GetServingPlan at 127.0.0.1" in server.follower.status.last_error
