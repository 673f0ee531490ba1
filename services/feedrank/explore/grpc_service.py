"""The gRPC adapter: ``Ranking.Rank`` over the transport-neutral ranking backend.

Thin on purpose: convert the request, honour the deadline, call the backend, convert
the result, map errors (through ``grpc_status``) and count everything: a request time
older than the feature history is ``INVALID_ARGUMENT``, anything unforeseen
``INTERNAL`` (logged), and every failed call is counted under its code.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import NoReturn, Protocol

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health

from feedrank.core import service_errors
from feedrank.core.bearer_tokens import bearer
from feedrank.core.clock import Clock
from feedrank.core.grpc_server import build_grpc_server
from feedrank.core.service_errors import abort, code_name
from feedrank.core.settings import ExploreSettings, TlsSettings
from feedrank.explore import metrics
from feedrank.explore.api_keys import ApiKeys
from feedrank.explore.deadline import Deadline
from feedrank.explore.errors import (
    ApiKeyRequired,
    ExploreError,
    FieldViolation,
    InvalidRankRequest,
    RequestTimeNotServable,
    UnexpectedRankError,
)
from feedrank.explore.queries import RankQuery, RankResult, build_query
from feedrank.features.point_in_time import HistoryNotRetained
from feedrank.v1 import ranking_pb2, ranking_pb2_grpc

log = logging.getLogger(__name__)

RANKING_SERVICE = ranking_pb2.DESCRIPTOR.services_by_name["Ranking"].full_name


class RankingBackend(Protocol):
    def rank(self, query: RankQuery, deadline: Deadline) -> RankResult: ...

    def arm_of(self, user_id: str) -> str: ...


class RankingServicer(ranking_pb2_grpc.RankingServicer):
    def __init__(self, backend: RankingBackend, settings: ExploreSettings, clock: Clock) -> None:
        self.backend = backend
        self.settings = settings
        self.clock = clock
        self.api_keys = ApiKeys(settings.api_keys_file) if settings.api_keys_file else None

    def Rank(
        self, request: ranking_pb2.RankRequest, context: grpc.ServicerContext
    ) -> ranking_pb2.RankResponse:
        started = time.perf_counter()
        try:
            response = self._rank(request, context)
        except ExploreError as error:
            self._fail(request, context, error)
        except HistoryNotRetained as error:
            stamped = not request.context.request_time_ms
            self._fail(
                request,
                context,
                RequestTimeNotServable(error.at_ms, error.from_ms, stamped_by_server=stamped),
            )
        except Exception as error:  # never UNKNOWN, never uncounted
            log.exception("Rank for user %r failed unexpectedly", request.user_id)
            self._fail(request, context, UnexpectedRankError(error))
        metrics.RANK_REQUESTS.labels(code="OK", arm=response.arm).inc()
        metrics.RANK_LATENCY.labels(arm=response.arm).observe(time.perf_counter() - started)
        return response

    def rank_bytes(self, payload: bytes, context: grpc.ServicerContext) -> ranking_pb2.RankResponse:
        """``Rank`` on the request's bytes as they came (see :func:`add_ranking_service`),
        after the caller's API key when the service requires one (``api_keys``)."""
        if self.api_keys is not None:
            key = bearer(context.invocation_metadata())
            if self.api_keys.app_of(key) is None:
                self._fail(ranking_pb2.RankRequest(), context, ApiKeyRequired(key is not None))
        try:
            request = ranking_pb2.RankRequest.FromString(payload)
        except DecodeError as error:
            refused = InvalidRankRequest(
                (FieldViolation("request", f"not a feedrank.v1.RankRequest: {error}"),)
            )
            self._fail(ranking_pb2.RankRequest(), context, refused)
        return self.Rank(request, context)

    def _fail(
        self, request: ranking_pb2.RankRequest, context: grpc.ServicerContext, error: ExploreError
    ) -> NoReturn:
        """Count the failed call under its status code, then end it with that status."""
        try:  # the arm labels the canary's error rate; a served call reports its own
            arm = self.backend.arm_of(request.user_id)
        except Exception:  # noqa: BLE001 - a failure to label must not lose the count
            arm = ""
        metrics.RANK_REQUESTS.labels(code=code_name(error.status_code), arm=arm).inc()
        abort(context, error)

    def _rank(
        self, request: ranking_pb2.RankRequest, context: grpc.ServicerContext
    ) -> ranking_pb2.RankResponse:
        deadline = Deadline.after(context.time_remaining())
        request_context = request.context
        query = build_query(
            user_id=request.user_id,
            limit=request.limit,
            request_time_ms=request_context.request_time_ms,
            language=request_context.language,
            country=request_context.country,
            surface=request_context.surface,
            numeric_context=dict(request_context.numeric),
            settings=self.settings,
            now_ms=self.clock.now_ms(),
        )
        deadline.check("ranking")
        result = self.backend.rank(query, deadline)
        return ranking_pb2.RankResponse(
            decision_id=result.decision_id,
            model_version=result.model_version,
            arm=result.arm,
            items=[
                ranking_pb2.RankedItem(
                    post_id=item.post_id,
                    position=item.position,
                    score=item.score,
                    propensity=item.propensity,
                )
                for item in result.items
            ],
        )


def add_ranking_service(servicer: RankingServicer, server: grpc.Server) -> None:
    """``Ranking.Rank`` with the request parsed by the servicer, not by gRPC.

    gRPC's own deserializer answers bytes that are not a ``RankRequest`` with
    ``INTERNAL`` before any handler runs, so the call is never counted. Parsed here,
    they are ``INVALID_ARGUMENT`` and counted like every failed call.
    """
    handlers: dict[str, grpc.RpcMethodHandler[bytes, ranking_pb2.RankResponse]] = {
        "Rank": grpc.unary_unary_rpc_method_handler(
            servicer.rank_bytes,
            request_deserializer=None,  # the bytes as they came
            response_serializer=ranking_pb2.RankResponse.SerializeToString,
        )
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(RANKING_SERVICE, handlers),)
    )


def build_server(
    backend: RankingBackend,
    settings: ExploreSettings,
    clock: Clock,
    health_servicer: health.HealthServicer,
    *,
    address: str,
    reuse_port: bool,
    tls: TlsSettings | None = None,
) -> tuple[grpc.Server, int]:
    """A gRPC server with Ranking, health and reflection; returns it and its bound port.
    ``tls``: the server's certificates (default: plaintext, on loopback only)."""
    servicer = RankingServicer(backend, settings, clock)
    return build_grpc_server(
        {RANKING_SERVICE: partial(add_ranking_service, servicer)},
        health_servicer,
        address=address,
        max_workers=settings.worker_threads,
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.so_reuseport", 1 if reuse_port else 0),
        ],
        label="Ranking",
        tls=tls,
    )


def set_serving(health_servicer: health.HealthServicer, serving: bool) -> None:
    """Flip overall and Ranking health together."""
    service_errors.set_serving(health_servicer, RANKING_SERVICE, serving=serving)
