"""The explore service's one error type, each subclass knowing its gRPC status.

The ranking pipeline raises these; ``feedrank.explore.grpc_status`` is the only place
that turns them into gRPC statuses.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class ExploreError(Exception):
    """Base of every error the explore service reports to its callers."""

    status_code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, violations: tuple[FieldViolation, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.violations = violations


class InvalidRankRequest(ExploreError):
    """The request breaks the contract; ``violations`` names each bad field."""

    status_code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, violations: tuple[FieldViolation, ...]) -> None:
        summary = "; ".join(f"{item.field}: {item.description}" for item in violations)
        super().__init__(f"invalid RankRequest: {summary}", violations)


class ModelNotLoaded(ExploreError):
    """No model and index are loaded yet (or the server is shutting down)."""

    status_code = grpc.StatusCode.UNAVAILABLE


class DeadlineExpired(ExploreError):
    """The caller's deadline passed; the remaining stages were not run."""

    status_code = grpc.StatusCode.DEADLINE_EXCEEDED


class ModelRefused(ExploreError):
    """A model version failed a check before serving; the current version keeps serving.

    ``check`` names what failed (registry: checksums, schema or manifest; format;
    catalogue; index; smoke; recall) and the message says why. Never sent to a Rank
    caller: the plan follower logs and counts it.
    """

    status_code = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, version: str, check: str, reason: str) -> None:
        super().__init__(f"model version {version} refused ({check}): {reason}")
        self.version = version
        self.check = check
        self.reason = reason
