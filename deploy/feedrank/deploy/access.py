"""Who may change a rollout: bearer tokens on the deploy control plane, mapped to roles.

* **viewer** (and anonymous callers): ``ListModels``, ``GetRollout``, ``RolloutHistory``,
  ``GetServingPlan`` and ``FetchModel`` - explore replicas follow plans and fetch
  models without credentials;
* **operator**: also every call that changes a rollout (:data:`MUTATING`).

A mutating call without a known token (gRPC metadata ``authorization: Bearer <token>``)
is ``UNAUTHENTICATED``; a viewer's is ``PERMISSION_DENIED``. Both are counted in
``feedrank_deploy_requests_total`` like every call, and never reach the control plane.

The tokens live in ``credentials.json`` beside the rollout state (mode 0600). The
service creates it on its first start with one operator and one viewer token, so the
default local stack refuses anonymous changes too; ``feedrank rollout`` reads the
operator token from the same state directory, or takes ``deploy.token``
(``FEEDRANK_DEPLOY__TOKEN``). Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import grpc

from feedrank.core.service_errors import abort, code_name
from feedrank.core.settings import Settings
from feedrank.deploy import metrics
from feedrank.deploy.errors import DeployError, NotAuthenticated, NotPermitted
from feedrank.deploy.store import state_file_path

Role = Literal["viewer", "operator"]
MUTATING = frozenset(
    {
        "StartRollout",
        "SetWeight",
        "PauseRollout",
        "ResumeRollout",
        "PromoteRollout",
        "AbortRollout",
        "UndoRollout",
    }
)


@dataclass(frozen=True)
class Identity:
    name: str
    role: Role


class Credentials:
    """The tokens the service accepts, each naming who holds it and in which role."""

    def __init__(self, tokens: dict[str, Identity]) -> None:
        self._tokens = tokens

    @classmethod
    def load_or_create(cls, path: Path) -> Credentials:
        """The credentials at ``path``; a new file (0600) with an operator and a viewer
        token when there is none."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            document = {
                "tokens": [
                    {"name": "local-operator", "role": "operator", "token": _new_token()},
                    {"name": "local-viewer", "role": "viewer", "token": _new_token()},
                ]
            }
            try:
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another deploy process made it first: read theirs
                pass
            else:
                with os.fdopen(descriptor, "w") as file:
                    json.dump(document, file, indent=2)
        return cls.from_document(json.loads(path.read_text()))

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> Credentials:
        tokens: dict[str, Identity] = {}
        for entry in document.get("tokens", []):
            role = entry["role"]
            if role not in ("viewer", "operator"):
                raise ValueError(f"credentials: unknown role {role!r} for {entry['name']!r}")
            tokens[str(entry["token"])] = Identity(str(entry["name"]), role)
        return cls(tokens)

    def identity(self, token: str | None) -> Identity | None:
        """Who holds ``token`` (compared in constant time), or None."""
        found = None
        for known, identity in self._tokens.items():
            if token is not None and hmac.compare_digest(known.encode(), token.encode()):
                found = identity
        return found

    def token_of(self, role: Role) -> str | None:
        """A token of ``role`` (what the local CLI uses), or None."""
        return next((token for token, who in self._tokens.items() if who.role == role), None)


def credentials_path(settings: Settings) -> Path:
    """The control plane's tokens, beside its rollout state."""
    return state_file_path(settings).parent / "credentials.json"


def operator_token(settings: Settings) -> str | None:
    """The token ``feedrank rollout`` sends: ``deploy.token`` (``FEEDRANK_DEPLOY__TOKEN``),
    else the local stack's operator token from :func:`credentials_path`, else none (a
    change is then refused)."""
    if settings.deploy.token is not None:
        return settings.deploy.token.get_secret_value()
    path = credentials_path(settings)
    if not path.exists():
        return None
    return Credentials.from_document(json.loads(path.read_text())).token_of("operator")


def bearer(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
    """The token of an ``authorization: Bearer <token>`` metadata entry, or None."""
    for key, value in metadata or ():
        if key.lower() == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


class AccessInterceptor(grpc.ServerInterceptor):
    """Lets a mutating call through only with an operator's token."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = details.method.rsplit("/", 1)[-1]
        if method not in MUTATING:
            return continuation(details)
        identity = self.credentials.identity(bearer(details.invocation_metadata))
        if identity is None:
            return _refusal(
                method,
                NotAuthenticated(
                    f"{method} needs an operator's token (authorization: Bearer …); "
                    "`feedrank rollout` sends the local stack's, or FEEDRANK_DEPLOY__TOKEN"
                ),
            )
        if identity.role != "operator":
            return _refusal(
                method,
                NotPermitted(f"{method} needs the operator role; {identity.name} is a viewer"),
            )
        return continuation(details)


def _refusal(method: str, error: DeployError) -> grpc.RpcMethodHandler[bytes, None]:
    def refuse(request: bytes, context: grpc.ServicerContext) -> None:
        metrics.REQUESTS.labels(method=method, code=code_name(error.status_code)).inc()
        abort(context, error)

    return grpc.unary_unary_rpc_method_handler(refuse)  # the request is never parsed


def _new_token() -> str:
    return secrets.token_urlsafe(32)
