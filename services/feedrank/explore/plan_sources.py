"""Where a worker reads its serving plan: the deploy service, or a JSON file.

``Deploy.GetServingPlan`` (``explore.deploy_address``) is the production source. A plan
file (``explore.plan_file``, the ``ServingPlan`` message in protobuf's JSON mapping, see
``serving_plan``) serves local runs and tests without a deploy service; write it
atomically (write a temporary file, then rename it over the plan).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import grpc

from feedrank.core.settings import ExploreSettings
from feedrank.explore.serving_plan import PlanError, ServingPlan
from feedrank.v1 import deploy_pb2, deploy_pb2_grpc


class PlanSourceError(Exception):
    """The plan could not be read; the worker keeps serving what it serves."""


class PlanSource(Protocol):
    def fetch(self) -> ServingPlan:
        """The current plan, or PlanSourceError saying why there is none."""

    def close(self) -> None: ...

    def describe(self) -> str: ...


class FilePlanSource:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fetch(self) -> ServingPlan:
        try:
            text = self.path.read_text()
        except OSError as error:
            raise PlanSourceError(f"cannot read the plan file {self.path}: {error}") from error
        try:
            return ServingPlan.from_json(text)
        except PlanError as error:
            raise PlanSourceError(f"{self.path}: {error}") from error

    def close(self) -> None:
        return None

    def describe(self) -> str:
        return f"plan file {self.path}"


class DeployPlanSource:
    """``Deploy.GetServingPlan`` over gRPC; create it after a fork, never before."""

    def __init__(self, address: str, timeout_s: float) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._channel = grpc.insecure_channel(address)
        self._stub = deploy_pb2_grpc.DeployStub(self._channel)

    def fetch(self) -> ServingPlan:
        try:
            message = self._stub.GetServingPlan(
                deploy_pb2.GetServingPlanRequest(), timeout=self.timeout_s
            )
        except grpc.RpcError as error:
            code = error.code() if isinstance(error, grpc.Call) else None
            details = error.details() if isinstance(error, grpc.Call) else str(error)
            raise PlanSourceError(
                f"Deploy.GetServingPlan at {self.address}: {code}: {details}"
            ) from error
        try:
            return ServingPlan.from_proto(message)
        except PlanError as error:
            raise PlanSourceError(f"Deploy at {self.address} sent a bad plan: {error}") from error

    def close(self) -> None:
        self._channel.close()

    def describe(self) -> str:
        return f"Deploy.GetServingPlan at {self.address}"


def plan_source(settings: ExploreSettings) -> PlanSource | None:
    """The deploy service if configured, else the plan file, else None (no plan)."""
    if settings.deploy_address:
        return DeployPlanSource(settings.deploy_address, settings.plan_timeout_s)
    if settings.plan_file is not None:
        return FilePlanSource(settings.plan_file)
    return None
