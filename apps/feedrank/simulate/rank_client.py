"""The simulator's side of ``Ranking.Rank``: a gRPC client returning just what it needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import grpc

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

    def __init__(self, address: str, *, timeout_s: float = 5.0) -> None:
        self._channel = grpc.insecure_channel(address)
        self._stub = ranking_pb2_grpc.RankingStub(self._channel)
        self._timeout_s = timeout_s

    def wait_ready(self, timeout_s: float) -> None:
        grpc.channel_ready_future(self._channel).result(timeout=timeout_s)

    def rank(self, user_id: str, limit: int, request_time_ms: int) -> ServedFeed:
        request = ranking_pb2.RankRequest(
            user_id=user_id,
            limit=limit,
            context=ranking_pb2.RankContext(request_time_ms=request_time_ms, surface="explore"),
        )
        response = self._stub.Rank(request, timeout=self._timeout_s)
        return ServedFeed(
            response.decision_id,
            response.model_version,
            response.arm,
            [item.post_id for item in response.items],
        )

    def close(self) -> None:
        self._channel.close()
