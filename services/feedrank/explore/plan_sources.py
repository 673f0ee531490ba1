"""Where a worker reads its serving plan: the deploy service, or a JSON file.

``Deploy.GetServingPlan`` (``explore.deploy_address``) is the production source. A plan
file (``explore.plan_file``, the ``ServingPlan`` message in protobuf's JSON mapping, see
``serving_plan``) serves local runs and tests without a deploy service; write it
atomically (write a temporary file, then rename it over the plan).
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Protocol

import grpc

from feedrank.core.grpc_tls import open_channel
from feedrank.core.settings import ExploreSettings, TlsSettings
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

    def __init__(self, address: str, timeout_s: float, tls: TlsSettings | None = None) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._channel = open_channel(address, tls or TlsSettings())
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


def plan_source(settings: ExploreSettings, tls: TlsSettings | None = None) -> PlanSource | None:
    """The deploy service if configured (over TLS per ``tls``), else the plan file, else
    None (no plan)."""
    if settings.deploy_address:
        return DeployPlanSource(settings.deploy_address, settings.plan_timeout_s, tls)
    if settings.plan_file is not None:
        return FilePlanSource(settings.plan_file)
    return None


def first_plan(
    settings: ExploreSettings, timeout_s: float = 30.0, tls: TlsSettings | None = None
) -> ServingPlan | None:
    """The plan as it stands, read once before the workers fork; None without a plan
    source or when it cannot be read.

    A gRPC channel must not cross a fork (the workers would inherit its threads and
    sockets), so the deploy service is asked from a spawned child process; a plan file is
    read here.
    """
    source_kind = "deploy" if settings.deploy_address else "file" if settings.plan_file else None
    if source_kind is None:
        return None
    if source_kind == "file":
        return _fetched(settings, tls)
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        try:
            text = pool.apply_async(_fetched_json, (settings, tls)).get(timeout=timeout_s)
        except multiprocessing.TimeoutError:
            return None
    return ServingPlan.from_json(text) if text is not None else None


def _fetched(settings: ExploreSettings, tls: TlsSettings | None) -> ServingPlan | None:
    source = plan_source(settings, tls)
    if source is None:
        return None
    try:
        return source.fetch()
    except PlanSourceError:
        return None
    finally:
        source.close()


def _fetched_json(settings: ExploreSettings, tls: TlsSettings | None) -> str | None:
    plan = _fetched(settings, tls)
    return plan.to_json() if plan is not None else None
