"""Who may change a rollout: bearer tokens on the deploy control plane, mapped to roles.

* **viewer** (and anonymous callers): ``ListModels``, ``GetRollout``, ``RolloutHistory``,
  ``GetServingPlan`` and ``FetchModel`` - explore replicas follow plans and fetch
  models without credentials;
* **operator**: also every call that changes a rollout (:data:`MUTATING`).

A mutating call without a known token (gRPC metadata ``authorization: Bearer <token>``)
is ``UNAUTHENTICATED``; a viewer's is ``PERMISSION_DENIED``. Both are counted in
``feedrank_deploy_requests_total`` like every call, and never reach the control plane.
With mutual TLS (``tls.client_ca_file``), a verified client certificate stands in for a
token: its common name is looked up among the identities' names. Whoever is let through
is :func:`caller` while the call runs, and the control plane records their name with
the change (``rollout history`` shows it).

The tokens live in ``credentials.json`` beside the rollout state (mode 0600). The
service creates it on its first start with one operator and one viewer token, so the
default local stack refuses anonymous changes too; ``feedrank rollout`` reads the
operator token from the same state directory, or takes ``deploy.token``
(``FEEDRANK_DEPLOY__TOKEN``). Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import contextvars
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn, cast

import grpc

from feedrank.core.bearer_tokens import bearer, new_token, same_secret
from feedrank.core.service_errors import abort, code_name
from feedrank.core.settings import Settings
from feedrank.deploy import metrics
from feedrank.deploy.errors import (
    DeployError,
    InvalidRolloutArgument,
    NotAuthenticated,
    NotPermitted,
)
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
    """The identities the service knows, each with a role: by token, and by name for a
    verified client certificate (an entry may leave its token out: certificate only)."""

    def __init__(self, tokens: dict[str, Identity], names: dict[str, Identity]) -> None:
        self._tokens = tokens
        self._names = names

    @classmethod
    def load_or_create(cls, path: Path) -> Credentials:
        """The credentials at ``path``; a new file (0600) with an operator and a viewer
        token when there is none."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            document = {
                "tokens": [
                    {"name": "local-operator", "role": "operator", "token": new_token()},
                    {"name": "local-viewer", "role": "viewer", "token": new_token()},
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
        names: dict[str, Identity] = {}
        for entry in document.get("tokens", []):
            role = entry["role"]
            if role not in ("viewer", "operator"):
                raise ValueError(f"credentials: unknown role {role!r} for {entry['name']!r}")
            identity = Identity(str(entry["name"]), role)
            names[identity.name] = identity
            if entry.get("token"):
                tokens[str(entry["token"])] = identity
        return cls(tokens, names)

    def by_certificate(self, common_name: str | None) -> Identity | None:
        """The identity named ``common_name`` (a verified client certificate's CN)."""
        return self._names.get(common_name) if common_name else None

    def identity(self, token: str | None) -> Identity | None:
        """Who holds ``token`` (compared in constant time), or None."""
        found = None
        for known, identity in self._tokens.items():  # every one compared: constant time
            if same_secret(known, token):
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


_CALLER: contextvars.ContextVar[Identity | None] = contextvars.ContextVar(
    "feedrank_deploy_caller", default=None
)


def caller() -> Identity | None:
    """Who made the call being handled (set for the mutating calls let through)."""
    return _CALLER.get()


def certificate_name(context: grpc.ServicerContext) -> str | None:
    """The common name of the client's certificate, when the connection is TLS and the
    server verified that certificate (mutual TLS); None otherwise."""
    # Each property is a list of values (the stubs say a single bytes value).
    auth = cast(Mapping[str, Sequence[bytes]], context.auth_context())
    if list(auth.get("transport_security_type") or ()) != [b"ssl"]:
        return None
    names = list(auth.get("x509_common_name") or ())
    return names[0].decode() if names else None


class AccessInterceptor(grpc.ServerInterceptor):
    """Lets a mutating call through only for an operator (token or client certificate).

    The check runs in the call's own handler, where the connection's TLS peer is known,
    before the request is parsed; the identity is :func:`caller` while the call runs.
    """

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(details)
        method = details.method.rsplit("/", 1)[-1]
        if handler is None or method not in MUTATING or handler.unary_unary is None:
            return handler
        return grpc.unary_unary_rpc_method_handler(
            self._guarded(method, handler),
            response_serializer=handler.response_serializer,
        )

    def _guarded(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> Callable[[bytes, grpc.ServicerContext], Any]:
        behaviour = handler.unary_unary
        parse = handler.request_deserializer
        assert behaviour is not None

        def guarded(request: bytes, context: grpc.ServicerContext) -> Any:
            identity = self.credentials.identity(
                bearer(context.invocation_metadata())
            ) or self.credentials.by_certificate(certificate_name(context))
            if identity is None:
                _refuse(
                    method,
                    context,
                    NotAuthenticated(
                        f"{method} needs an operator's token (authorization: Bearer …) or "
                        "client certificate; `feedrank rollout` sends the local stack's, "
                        "or FEEDRANK_DEPLOY__TOKEN"
                    ),
                )
            if identity.role != "operator":
                _refuse(
                    method,
                    context,
                    NotPermitted(f"{method} needs the operator role; {identity.name} is a viewer"),
                )
            try:
                message = parse(request) if parse is not None else request
            except Exception as error:  # noqa: BLE001 - protobuf raises DecodeError and others
                _refuse(method, context, InvalidRolloutArgument("request", f"unreadable: {error}"))
            entered = _CALLER.set(identity)
            try:
                return behaviour(message, context)
            finally:
                _CALLER.reset(entered)

        return guarded


def _refuse(method: str, context: grpc.ServicerContext, error: DeployError) -> NoReturn:
    metrics.REQUESTS.labels(method=method, code=code_name(error.status_code)).inc()
    abort(context, error)
