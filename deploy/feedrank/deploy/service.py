"""The gRPC adapter: ``feedrank.v1.Deploy`` over the transport-neutral DeployControl.

Thin on purpose: convert the request, call the control plane, convert the result, map
errors (through ``grpc_status``) and count every call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from functools import partial
from typing import NoReturn, TypeVar

import grpc
from grpc_health.v1 import health

from feedrank.core import service_errors
from feedrank.core.grpc_server import build_grpc_server
from feedrank.core.service_errors import abort, code_name
from feedrank.core.settings import TlsSettings
from feedrank.deploy import metrics
from feedrank.deploy.access import AccessInterceptor, Credentials, caller
from feedrank.deploy.control import DeployControl
from feedrank.deploy.errors import DeployError, ModelStreamsBusy, UnexpectedDeployError
from feedrank.deploy.state import Phase, Rollout
from feedrank.registry import FileChunk, VersionManifest, VersionPart
from feedrank.v1 import deploy_pb2, deploy_pb2_grpc

log = logging.getLogger(__name__)

DEPLOY_SERVICE = deploy_pb2.DESCRIPTOR.services_by_name["Deploy"].full_name
PHASES = {
    Phase.STABLE: deploy_pb2.ROLLOUT_PHASE_STABLE,
    Phase.PROGRESSING: deploy_pb2.ROLLOUT_PHASE_PROGRESSING,
    Phase.PAUSED: deploy_pb2.ROLLOUT_PHASE_PAUSED,
    Phase.PROMOTED: deploy_pb2.ROLLOUT_PHASE_PROMOTED,
    Phase.ABORTED: deploy_pb2.ROLLOUT_PHASE_ABORTED,
    Phase.ROLLED_BACK: deploy_pb2.ROLLOUT_PHASE_ROLLED_BACK,
}
Result = TypeVar("Result")


def rollout_message(
    rollout: Rollout, analysis: str = "", holdout_share: float = 0.0
) -> deploy_pb2.Rollout:
    held = holdout_share > 0 and bool(rollout.holdout_version)
    return deploy_pb2.Rollout(
        stable_version=rollout.stable_version,
        canary_version=rollout.canary_version,
        phase=PHASES[rollout.phase],
        canary_weight=rollout.canary_weight,
        steps=list(rollout.steps),
        current_step=rollout.current_step,
        message=rollout.message,
        updated_ms=rollout.updated_ms,
        analysis=analysis,
        holdout_version=rollout.holdout_version if held else "",
        holdout_weight=holdout_share if held else 0.0,
        actor=rollout.actor,
    )


def model_message(manifest: VersionManifest) -> deploy_pb2.ModelVersion:
    return deploy_pb2.ModelVersion(
        version=manifest.version,
        parent=manifest.parent,
        created_ms=manifest.created_ms,
        feature_schema_hash=manifest.feature_schema_hash,
        metrics=manifest.metrics,
    )


def chunk_message(part: VersionPart) -> deploy_pb2.ModelChunk:
    """One part of a registry version (``registry.transfer``) as a FetchModel message."""
    if isinstance(part, FileChunk):
        return deploy_pb2.ModelChunk(
            file_chunk=deploy_pb2.ModelFileChunk(path=part.path, offset=part.offset, data=part.data)
        )
    return deploy_pb2.ModelChunk(
        manifest=deploy_pb2.ModelManifest(
            version=part.version,
            manifest_json=part.manifest_json,
            files=[
                deploy_pb2.ModelFile(path=path, sha256=digest.sha256, size_bytes=digest.size_bytes)
                for path, digest in sorted(part.files.items())
            ],
        )
    )


class DeployServicer(deploy_pb2_grpc.DeployServicer):
    def __init__(self, control: DeployControl, *, max_model_streams: int = 2) -> None:
        """``max_model_streams``: FetchModel streams at once (each holds a handler thread
        for its whole download; keep it below the thread count so plans are answered)."""
        self.control = control
        self.max_model_streams = max_model_streams
        self._model_streams = threading.BoundedSemaphore(max_model_streams)

    def ListModels(
        self, request: deploy_pb2.ListModelsRequest, context: grpc.ServicerContext
    ) -> deploy_pb2.ListModelsResponse:
        return self._call(
            "ListModels",
            context,
            lambda: deploy_pb2.ListModelsResponse(
                models=[model_message(item) for item in self.control.models()]
            ),
        )

    def GetRollout(
        self, request: deploy_pb2.GetRolloutRequest, context: grpc.ServicerContext
    ) -> deploy_pb2.Rollout:
        return self._rollout("GetRollout", context, self.control.rollout)

    def StartRollout(
        self, request: deploy_pb2.StartRolloutRequest, context: grpc.ServicerContext
    ) -> deploy_pb2.Rollout:
        steps = list(request.steps)
        return self._rollout(
            "StartRollout",
            context,
            lambda: self.control.start(request.version, steps, actor=_actor()),
        )

    def SetWeight(
        self, request: deploy_pb2.SetWeightRequest, context: grpc.ServicerContext
    ) -> deploy_pb2.Rollout:
        return self._rollout(
            "SetWeight",
            context,
            lambda: self.control.set_weight(request.canary_weight, actor=_actor()),
        )

    def PauseRollout(
        self, request: deploy_pb2.PauseRolloutRequest, context: grpc.ServicerContext
    ) -> deploy_pb2.Rollout:
        return self._rollout("PauseRollout", context, lambda: self.control.pause(actor=_actor()))

    def ResumeRollout(
        self, request: deploy_pb2.ResumeRolloutRequest, context: grpc.ServicerContext
    ) -> deploy_pb2.Rollout:
        return self._rollout("ResumeRollout", context, lambda: self.control.resume(actor=_actor()))

    def PromoteRollout(
        self, request: deploy_pb2.PromoteRolloutRequest, context: grpc.ServicerContext
    ) -> deploy_pb2.Rollout:
        return self._rollout(
            "PromoteRollout",
            context,
            lambda: self.control.promote(full=request.full, actor=_actor()),
        )

    def AbortRollout(
        self, request: deploy_pb2.AbortRolloutRequest, context: grpc.ServicerContext
    ) -> deploy_pb2.Rollout:
        return self._rollout(
            "AbortRollout", context, lambda: self.control.abort(request.reason, actor=_actor())
        )

    def UndoRollout(
        self, request: deploy_pb2.UndoRolloutRequest, context: grpc.ServicerContext
    ) -> deploy_pb2.Rollout:
        return self._rollout(
            "UndoRollout", context, lambda: self.control.undo(request.to_version, actor=_actor())
        )

    def RolloutHistory(
        self, request: deploy_pb2.RolloutHistoryRequest, context: grpc.ServicerContext
    ) -> deploy_pb2.RolloutHistoryResponse:
        return self._call(
            "RolloutHistory",
            context,
            lambda: deploy_pb2.RolloutHistoryResponse(
                entries=[
                    rollout_message(entry, holdout_share=self.control.config.holdout_share)
                    for entry in self.control.history()
                ]
            ),
        )

    def GetServingPlan(
        self, request: deploy_pb2.GetServingPlanRequest, context: grpc.ServicerContext
    ) -> deploy_pb2.ServingPlan:
        def plan() -> deploy_pb2.ServingPlan:
            arms, salt = self.control.serving_plan()
            return deploy_pb2.ServingPlan(
                arms=[
                    deploy_pb2.ServingArm(
                        arm=arm.arm, model_version=arm.model_version, weight=arm.weight
                    )
                    for arm in arms
                ],
                salt=salt,
            )

        return self._call("GetServingPlan", context, plan)

    def FetchModel(
        self, request: deploy_pb2.FetchModelRequest, context: grpc.ServicerContext
    ) -> Iterator[deploy_pb2.ModelChunk]:
        if not self._model_streams.acquire(blocking=False):
            self._fail(
                "FetchModel",
                context,
                ModelStreamsBusy(
                    f"{self.max_model_streams} model downloads are in flight; try again shortly"
                ),
            )
        try:
            for part in self.control.model_parts(request.version):
                if isinstance(part, FileChunk):
                    metrics.MODEL_BYTES_SENT.inc(len(part.data))
                yield chunk_message(part)
        except DeployError as error:
            self._fail("FetchModel", context, error)
        except Exception as error:  # noqa: BLE001 - never UNKNOWN; logged in _fail_unexpectedly
            self._fail_unexpectedly("FetchModel", context, error)
        finally:
            self._model_streams.release()
        metrics.REQUESTS.labels(method="FetchModel", code="OK").inc()

    def _rollout(
        self, method: str, context: grpc.ServicerContext, action: Callable[[], Rollout]
    ) -> deploy_pb2.Rollout:
        return self._call(
            method,
            context,
            lambda: rollout_message(
                action(), self.control.last_analysis, self.control.config.holdout_share
            ),
        )

    def _call(
        self, method: str, context: grpc.ServicerContext, action: Callable[[], Result]
    ) -> Result:
        try:
            result = action()
        except DeployError as error:
            self._fail(method, context, error)
        except Exception as error:  # noqa: BLE001 - never UNKNOWN; logged in _fail_unexpectedly
            self._fail_unexpectedly(method, context, error)
        metrics.REQUESTS.labels(method=method, code="OK").inc()
        return result

    @staticmethod
    def _fail(method: str, context: grpc.ServicerContext, error: DeployError) -> NoReturn:
        metrics.REQUESTS.labels(method=method, code=code_name(error.status_code)).inc()
        abort(context, error)

    @classmethod
    def _fail_unexpectedly(
        cls, method: str, context: grpc.ServicerContext, error: Exception
    ) -> NoReturn:
        log.error("%s failed unexpectedly", method, exc_info=error)
        cls._fail(method, context, UnexpectedDeployError(method, error))


def _actor() -> str:
    """The name of who made the call (the access interceptor let them through)."""
    identity = caller()
    return identity.name if identity is not None else ""


def build_server(
    control: DeployControl,
    health_servicer: health.HealthServicer,
    *,
    address: str,
    credentials: Credentials,
    threads: int = 6,
    tls: TlsSettings | None = None,
) -> tuple[grpc.Server, int]:
    """A gRPC server with Deploy, health and reflection; returns it and its bound port.
    Calls that change a rollout need an operator's token from ``credentials``
    (:mod:`feedrank.deploy.access`); with ``tls`` (certificates, default plaintext on
    loopback only), a client certificate can stand in for the token. At most a third
    of the ``threads`` stream models at once (``FetchModel``)."""
    servicer = DeployServicer(control, max_model_streams=max(1, threads // 3))
    return build_grpc_server(
        {DEPLOY_SERVICE: partial(deploy_pb2_grpc.add_DeployServicer_to_server, servicer)},
        health_servicer,
        address=address,
        max_workers=threads,
        interceptors=[AccessInterceptor(credentials)],
        label="Deploy",
        tls=tls,
    )


def set_serving(health_servicer: health.HealthServicer, serving: bool) -> None:
    """Flip overall and Deploy health together."""
    service_errors.set_serving(health_servicer, DEPLOY_SERVICE, serving=serving)
