"""A real in-process Deploy gRPC server on a free port, over a small registry."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from typer.testing import CliRunner

from feedrank.cli.main import app
from feedrank.core.clock import ManualClock
from feedrank.core.settings import Settings, load_settings
from feedrank.deploy.access import operator_token
from feedrank.deploy.server import DeployServer
from feedrank.registry import LocalModelRegistry
from feedrank.v1 import deploy_pb2_grpc
from tests.support.deploy import publish_versions

START_MS = 1_764_000_000_000


@dataclass
class RunningDeploy:
    server: DeployServer
    settings: Settings
    clock: ManualClock
    versions: list[str]

    @property
    def address(self) -> str:
        return self.server.address

    def stub(self) -> deploy_pb2_grpc.DeployStub:
        return deploy_pb2_grpc.DeployStub(grpc.insecure_channel(self.address))

    @property
    def operator(self) -> tuple[tuple[str, str], ...]:
        """gRPC metadata with the operator token the service wrote: calls that change a
        rollout need it."""
        return (("authorization", f"Bearer {operator_token(self.settings)}"),)

    def cli(self, *args: str) -> tuple[int, str]:
        """Run ``feedrank rollout ARGS --address …`` in-process; (exit code, output)."""
        # The CLI's settings are its environment's, not this state dir: the operator
        # token of the service's own credentials file goes in as FEEDRANK_DEPLOY__TOKEN.
        token = operator_token(self.settings) or ""
        result = CliRunner().invoke(
            app,
            ["rollout", *args, "--address", self.address],
            env={"FEEDRANK_DEPLOY__TOKEN": token},
        )
        return result.exit_code, result.output


def deploy_settings(state_dir: Path, **deploy: object) -> Settings:
    return load_settings(
        paths={"state_dir": state_dir},
        deploy={"step_pause_s": 600.0, "min_impressions": 20_000, **deploy},
    )


@pytest.fixture
def deploy_server(tmp_path: Path) -> Iterator[RunningDeploy]:
    clock = ManualClock(START_MS)
    settings = deploy_settings(tmp_path / "state")
    versions = publish_versions(LocalModelRegistry(settings.paths.registry, clock=clock), 3)
    server = DeployServer(settings, clock, port=0, analysis=False)
    server.start()
    try:
        yield RunningDeploy(server, settings, clock, versions)
    finally:
        server.stop(grace_s=0.5)
