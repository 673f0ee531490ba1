"""A client of the Deploy gRPC service, as ``feedrank rollout`` uses it.

One channel to the service, a deadline on every call, and a failed call turned into a
:class:`DeployCallFailed` that carries what the service said: the status code, the
message (or a hint that the service is not running when it cannot be reached) and the
field violations of a ``google.rpc.BadRequest`` in the rich status.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import grpc

from feedrank.core.bearer_tokens import bearer_metadata
from feedrank.core.grpc_tls import open_channel
from feedrank.core.service_errors import call_violations
from feedrank.core.settings import TlsSettings
from feedrank.v1 import deploy_pb2_grpc

__all__ = ["DeployCallFailed", "DeployClient", "field_violations"]

Reply = TypeVar("Reply")

_UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class DeployCallFailed(Exception):
    """A call the deploy service refused, or that never reached it."""

    def __init__(
        self, code: grpc.StatusCode, message: str, violations: list[dict[str, str]]
    ) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.violations = violations

    def to_dict(self) -> dict[str, object]:
        """``{"code": "INVALID_ARGUMENT", "message": …, "violations": [{field, description}]}``."""
        return {"code": self.code.name, "message": self.message, "violations": self.violations}


class DeployClient:
    """Calls the Deploy service at ``address``, each call within ``timeout_s`` seconds."""

    def __init__(
        self,
        address: str,
        timeout_s: float,
        token: str | None = None,
        tls: TlsSettings | None = None,
    ) -> None:
        """``token``: sent as ``authorization: Bearer …`` (calls that change a rollout
        need an operator's, ``feedrank.deploy.access``); ``tls``: the CA to trust and
        the client certificate to present (default: plaintext)."""
        self.address = address
        self.timeout_s = timeout_s
        self._metadata = bearer_metadata(token)
        self._channel = open_channel(address, tls or TlsSettings())
        self.stub = deploy_pb2_grpc.DeployStub(self._channel)

    def call(self, method: Callable[..., Reply], request: object) -> Reply:
        """``method(request)`` (a method of :attr:`stub`); raises :class:`DeployCallFailed`."""
        try:
            return method(request, timeout=self.timeout_s, metadata=self._metadata)
        except grpc.RpcError as error:
            raise self.failure(error) from error

    def failure(self, error: grpc.RpcError) -> DeployCallFailed:
        """What a failed call means, with a hint when the service cannot be reached."""
        code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
        message = error.details() if isinstance(error, grpc.Call) else str(error)
        if code in _UNREACHABLE:
            message = (
                f"cannot reach the deploy service at {self.address} ({message}); "
                "is `feedrank deploy` running?"
            )
        return DeployCallFailed(code, message, field_violations(error))


def field_violations(error: grpc.RpcError) -> list[dict[str, str]]:
    """The ``google.rpc.BadRequest`` field violations in a failed call's rich status."""
    return [
        {"field": item.field, "description": item.description} for item in call_violations(error)
    ]
