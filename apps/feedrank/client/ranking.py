"""Asking feedrank for a feed: a typed client of the ``feedrank.v1.Ranking`` gRPC service.

Example::

    from feedrank.client import RankingClient

    with RankingClient("127.0.0.1:50051", timeout_s=2.0) as client:
        client.wait_ready(timeout_s=10)
        feed = client.rank("u42", limit=20, language="en", country="US", surface="home")
        for item in feed.items:
            print(item.position, item.post_id, item.score, item.propensity)
        # Log feed.decision_id with the impression: rewards quote it.

A failed call raises a :class:`~feedrank.client.errors.FeedrankError` subclass
(:class:`InvalidRequest`, :class:`Unavailable`, :class:`DeadlineExceeded`,
:class:`RankFailed`), never a bare ``grpc.RpcError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import grpc

from feedrank.client.errors import InvalidRequest, Unavailable, error_from_rpc
from feedrank.core.bearer_tokens import bearer_metadata
from feedrank.v1 import ranking_pb2, ranking_pb2_grpc

__all__ = [
    "DEFAULT_RANKING_ADDRESS",
    "Feed",
    "FeedItem",
    "RankingClient",
    "feed_of",
    "rank_request",
    "tls_credentials",
]

DEFAULT_RANKING_ADDRESS = "127.0.0.1:50051"
"""Where the local stack serves ``Ranking.Rank``."""

_INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class FeedItem:
    """One ranked post.

    ``position`` counts from 0 (the top); ``propensity`` is the probability that the
    logging policy put this post at this position (what off-policy evaluation divides by).
    """

    post_id: str
    position: int
    score: float
    propensity: float


@dataclass(frozen=True)
class Feed:
    """The answer to one ``Rank`` call.

    ``decision_id`` names the logged decision (rewards refer to it), ``model_version``
    and ``arm`` say which model and traffic arm served it; ``items`` are in feed order.
    """

    decision_id: str
    model_version: str
    arm: str
    items: tuple[FeedItem, ...]

    @property
    def post_ids(self) -> list[str]:
        """The posts in feed order."""
        return [item.post_id for item in self.items]


class RankingClient:
    """Blocking ``Rank`` calls over one gRPC channel, each with a deadline.

    The client is thread-safe: share one per process. ``address`` is ``host:port``;
    ``timeout_s`` is the default deadline of each call; pass ``credentials`` for TLS
    (:func:`tls_credentials` reads the CA and, for mutual TLS, your certificate), else
    the channel is plain text. ``api_key`` is your app's key, sent with every call, when
    the service requires one (``feedrank api-keys add APP`` makes it); ``server_name``
    is the name to check the server's certificate against, when the address is not in it.
    """

    def __init__(
        self,
        address: str = DEFAULT_RANKING_ADDRESS,
        *,
        timeout_s: float = 5.0,
        credentials: grpc.ChannelCredentials | None = None,
        api_key: str | None = None,
        server_name: str | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.address = address
        self.timeout_s = timeout_s
        self._metadata = bearer_metadata(api_key)
        options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
        self._channel = (
            grpc.secure_channel(address, credentials, options=options)
            if credentials is not None
            else grpc.insecure_channel(address)
        )
        self._stub = ranking_pb2_grpc.RankingStub(self._channel)

    def wait_ready(self, timeout_s: float) -> None:
        """Block until the channel is connected; :class:`Unavailable` after ``timeout_s``."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout_s)
        except grpc.FutureTimeoutError:
            raise Unavailable(
                f"no Ranking server reachable at {self.address} within {timeout_s} s",
                code=grpc.StatusCode.UNAVAILABLE,
            ) from None

    def rank(
        self,
        user_id: str,
        *,
        limit: int = 0,
        language: str | None = None,
        country: str | None = None,
        surface: str | None = None,
        request_time_ms: int | None = None,
        numeric: Mapping[str, float] | None = None,
        timeout_s: float | None = None,
    ) -> Feed:
        """Rank posts for ``user_id`` and return the feed.

        ``limit`` is how many items to return (0: the server's default). ``language``
        (BCP 47, e.g. "en"), ``country`` (ISO 3166-1 alpha-2, e.g. "US"), ``surface``
        (where the feed is shown) and ``request_time_ms`` (ms since the epoch; None: the
        server's clock) form the request context, with ``numeric`` extra context
        features (finite numbers). ``timeout_s`` overrides the client's deadline.

        Raises :class:`InvalidRequest` (the server's details and field violations),
        :class:`Unavailable`, :class:`DeadlineExceeded` or :class:`RankFailed`.
        """
        request = rank_request(
            user_id,
            limit,
            language=language,
            country=country,
            surface=surface,
            request_time_ms=request_time_ms,
            numeric=numeric,
        )
        try:
            response: ranking_pb2.RankResponse = self._stub.Rank(
                request,
                timeout=timeout_s if timeout_s is not None else self.timeout_s,
                metadata=self._metadata,
            )
        except grpc.RpcError as error:
            raise error_from_rpc(error) from error
        return feed_of(response)

    def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def tls_credentials(
    ca_file: str | Path | None = None,
    *,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
) -> grpc.ChannelCredentials:
    """TLS credentials trusting the CA in ``ca_file`` (None: the system's roots) and, for
    mutual TLS, presenting ``cert_file`` with its ``key_file`` (PEM files)."""
    if (cert_file is None) != (key_file is None):
        raise ValueError("cert_file and key_file go together: give both or neither")
    return grpc.ssl_channel_credentials(
        root_certificates=Path(ca_file).read_bytes() if ca_file else None,
        private_key=Path(key_file).read_bytes() if key_file else None,
        certificate_chain=Path(cert_file).read_bytes() if cert_file else None,
    )


def feed_of(response: ranking_pb2.RankResponse) -> Feed:
    """The :class:`Feed` a ``RankResponse`` carries."""
    return Feed(
        decision_id=response.decision_id,
        model_version=response.model_version,
        arm=response.arm,
        items=tuple(
            FeedItem(item.post_id, item.position, item.score, item.propensity)
            for item in response.items
        ),
    )


def rank_request(
    user_id: str,
    limit: int = 0,
    *,
    language: str | None = None,
    country: str | None = None,
    surface: str | None = None,
    request_time_ms: int | None = None,
    numeric: Mapping[str, float] | None = None,
) -> ranking_pb2.RankRequest:
    """The ``RankRequest`` of :meth:`RankingClient.rank`'s arguments; the context is sent
    only when one of its fields is given. A limit protobuf cannot carry is refused here
    (:class:`InvalidRequest`), as the server would refuse it."""
    if not -_INT32_MAX - 1 <= limit <= _INT32_MAX:
        raise _refused("limit", f"{limit} does not fit an int32; 0 means the server default")
    request = ranking_pb2.RankRequest(user_id=user_id, limit=limit)
    context_given = (language, country, surface, request_time_ms, numeric)
    if any(value is not None for value in context_given):
        request.context.CopyFrom(
            ranking_pb2.RankContext(
                request_time_ms=request_time_ms or 0,
                language=language or "",
                country=country or "",
                surface=surface or "",
                numeric=dict(numeric or {}),
            )
        )
    return request


def _refused(field: str, description: str) -> InvalidRequest:
    return InvalidRequest(
        f"invalid RankRequest: {field}: {description}", violations={field: description}
    )
