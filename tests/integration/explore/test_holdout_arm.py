"""A real deploy service with a holdout and a worker following its plan over gRPC: the
holdout's users keep the first version while a rollout promotes the next."""

from __future__ import annotations

import time
from pathlib import Path

from typer.testing import CliRunner

from feedrank.cli.main import app
from feedrank.core.clock import ManualClock
from feedrank.core.settings import load_settings
from feedrank.deploy.access import operator_token
from feedrank.deploy.server import DeployServer
from feedrank.explore.app import explore_service, worker_backend
from feedrank.registry import LocalModelRegistry
from feedrank.v1 import ranking_pb2, ranking_pb2_grpc
from tests.support.model_versions import all_posts, publish, small_bundle
from tests.support.serving import served, world_serving_state

START_MS = 1_764_000_000_000
USERS = [f"u{index}" for index in range(80)]


def arms_of(stub: ranking_pb2_grpc.RankingStub) -> dict[str, tuple[str, str]]:
    found = {}
    for user in USERS:
        response = stub.Rank(ranking_pb2.RankRequest(user_id=user, limit=5), timeout=10)
        found[user] = (response.arm, response.model_version)
    return found


def wait_for(
    stub: ranking_pb2_grpc.RankingStub, arms: set[tuple[str, str]]
) -> dict[str, tuple[str, str]]:
    """Serve every user until the (arm, version) pairs served are ``arms`` (the worker
    polls the plan)."""
    deadline = time.monotonic() + 30
    while True:
        found = arms_of(stub)
        if set(found.values()) == arms:
            return found
        assert time.monotonic() < deadline, f"still serving {found}"
        time.sleep(0.1)


def rollout(deploy: DeployServer, *arguments: str) -> None:
    token = operator_token(deploy.settings) or ""  # the service's own credentials file
    result = CliRunner().invoke(
        app,
        ["rollout", *arguments, "--address", deploy.address],
        env={"FEEDRANK_DEPLOY__TOKEN": token},
    )
    assert result.exit_code == 0, result.output


def test_the_holdout_keeps_its_users_on_the_first_version_through_a_rollout(
    tmp_path: Path,
) -> None:
    paths = {"state_dir": tmp_path / "state", "registry_dir": tmp_path / "registry"}
    clock = ManualClock(START_MS)
    deploy = DeployServer(
        load_settings(paths=paths, deploy={"holdout_share": 0.25}), clock, port=0, analysis=False
    )
    deploy.start()
    settings = load_settings(
        world={"num_users": 300, "num_creators": 200, "num_posts": 2_000},
        paths=paths,
        explore={
            "deploy_address": deploy.address,
            "plan_poll_interval_s": 0.1,
            "feature_updates": False,  # no broker here: the plan alone
        },
    )
    state = world_serving_state(settings, clock)
    registry = LocalModelRegistry(settings.paths.registry)
    posts = all_posts(state.store, START_MS)
    first, second = (publish(registry, small_bundle(posts, seed)) for seed in (1, 2))
    service = explore_service(settings, clock, state, log_decisions=False)
    backend = worker_backend(settings, clock, state, service)
    try:
        with served(backend, settings, clock) as stub:
            rollout(deploy, "start", first)
            before = wait_for(stub, {("holdout", first), ("stable", first)})
            held = {user for user, (arm, _) in before.items() if arm == "holdout"}
            assert 0.1 < len(held) / len(USERS) < 0.4  # about a quarter

            rollout(deploy, "start", second, "--steps", "0.5,1.0")
            wait_for(stub, {("holdout", first), ("stable", first), ("canary", second)})
            rollout(deploy, "promote", "--full")
            after = wait_for(stub, {("holdout", first), ("stable", second)})
            assert {user for user, (arm, _) in after.items() if arm == "holdout"} == held
            assert {after[user] for user in held} == {("holdout", first)}
            assert {after[user] for user in USERS if user not in held} == {("stable", second)}
    finally:
        deploy.stop(grace_s=0.5)
