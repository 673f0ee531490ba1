"""The deploy service's one error type, each subclass knowing its gRPC status.

The rollout state machine and the control plane raise these;
``feedrank.core.service_errors`` is the only place that turns them into gRPC statuses.
"""

from __future__ import annotations

import grpc

from feedrank.core.service_errors import FieldViolation, ServiceError

__all__ = ["DeployError", "FieldViolation"]


class DeployError(ServiceError):
    """Base of every error the deploy service reports to its callers."""


class InvalidRolloutArgument(DeployError):
    """A weight, a step list or a version name breaks the contract."""

    status_code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"invalid {field}: {description}", (FieldViolation(field, description),))


class UnexpectedDeployError(DeployError):
    """A failure no part of the control plane anticipated: logged with its traceback,
    counted, and answered ``INTERNAL``, never ``UNKNOWN``."""

    status_code = grpc.StatusCode.INTERNAL

    def __init__(self, method: str, error: Exception) -> None:
        super().__init__(f"internal error in {method}: {type(error).__name__}: {error}")


class NotAuthenticated(DeployError):
    """A call that changes a rollout came without a known token."""

    status_code = grpc.StatusCode.UNAUTHENTICATED


class NotPermitted(DeployError):
    """A known caller whose role does not allow the call."""

    status_code = grpc.StatusCode.PERMISSION_DENIED


class ModelVersionNotFound(DeployError):
    """The registry has no such version."""

    status_code = grpc.StatusCode.NOT_FOUND


class RolloutPreconditionFailed(DeployError):
    """The request does not fit the rollout's phase, or the version cannot serve."""

    status_code = grpc.StatusCode.FAILED_PRECONDITION


class ModelStreamsBusy(DeployError):
    """Every FetchModel stream the service allows is in use: try again shortly."""

    status_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class RegistryUnreadable(DeployError):
    """A registry file could not be read (an I/O error): try again shortly."""

    status_code = grpc.StatusCode.UNAVAILABLE


class StateFileCorrupt(DeployError):
    """The durable rollout state cannot be read; the service refuses to guess."""

    status_code = grpc.StatusCode.DATA_LOSS
