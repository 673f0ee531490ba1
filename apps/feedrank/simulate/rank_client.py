"""The simulator's side of ``Ranking.Rank``: a gRPC client returning just what it needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import grpc

from feedrank.core.bearer_tokens import bearer_metadata
from feedrank.core.grpc_tls import open_channel
from feedrank.core.settings import TlsSettings
from feedrank.v1 import ranking_pb2, ranking_pb2_grpc


@dataclass(frozen=True)
class ServedFeed:
    decision_id: str
    model_version: str
    arm: str
    post_ids: list[str]


class RankClient(Protocol):
    def rank(self, user_id: str, limit: int, request_time_ms: int) -> ServedFeed: ...


class GrpcRankClient:
    """Blocking calls on one channel (thread-safe), with a per-call deadline."""

    def __init__(
        self,
        address: str,
        *,
        timeout_s: float = 5.0,
        tls: TlsSettings | None = None,
        api_key: str | None = None,
    ) -> None:
        """``tls``: the CA and client certificate (default: plaintext); ``api_key``: the
        simulated app's key, when Rank requires one (``explore.api_keys_file``)."""
        self._channel = open_channel(address, tls or TlsSettings())
        self._stub = ranking_pb2_grpc.RankingStub(self._channel)
        self._timeout_s = timeout_s
        self._metadata = bearer_metadata(api_key)

    def wait_ready(self, timeout_s: float) -> None:
        grpc.channel_ready_future(self._channel).result(timeout=timeout_s)

    def rank(self, user_id: str, limit: int, request_time_ms: int) -> ServedFeed:
        request = ranking_pb2.RankRequest(
            user_id=user_id,
            limit=limit,
            context=ranking_pb2.RankContext(request_time_ms=request_time_ms, surface="explore"),
        )
        response = self._stub.Rank(request, timeout=self._timeout_s, metadata=self._metadata)
        return ServedFeed(
            response.decision_id,
            response.model_version,
            response.arm,
            [item.post_id for item in response.items],
        )

    def close(self) -> None:
        self._channel.close()
