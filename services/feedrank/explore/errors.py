"""The explore service's one error type, each subclass knowing its gRPC status.

The ranking pipeline raises these; ``feedrank.core.service_errors`` is the only place
that turns them into gRPC statuses.
"""

from __future__ import annotations

import grpc

from feedrank.core.service_errors import FieldViolation, ServiceError

__all__ = ["ExploreError", "FieldViolation"]


class ExploreError(ServiceError):
    """Base of every error the explore service reports to its callers."""


class InvalidRankRequest(ExploreError):
    """The request breaks the contract; ``violations`` names each bad field."""

    status_code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, violations: tuple[FieldViolation, ...]) -> None:
        summary = "; ".join(f"{item.field}: {item.description}" for item in violations)
        super().__init__(f"invalid RankRequest: {summary}", violations)


class RequestTimeNotServable(InvalidRankRequest):
    """The time a Rank call is served at is older than the feature history the service
    keeps: point-in-time features cannot be read as of then.

    ``stamped_by_server``: the request named no time and the service's clock gave one,
    behind the event time its features follow (e.g. an app calling a simulated world
    that runs days ahead): the request must carry its own time.
    """

    def __init__(self, at_ms: int, from_ms: int, *, stamped_by_server: bool) -> None:
        if stamped_by_server:
            description = (
                f"not set, and the server's clock ({at_ms}) is before the feature history it "
                f"keeps (from {from_ms}): send the request's time"
            )
        else:
            description = (
                f"{at_ms} is before the feature history the server keeps (from {from_ms}): "
                "send a later time, or 0 for the server's"
            )
        super().__init__((FieldViolation("context.request_time_ms", description),))
        self.at_ms = at_ms
        self.from_ms = from_ms


class ApiKeyRequired(ExploreError):
    """Rank requires per-app API keys (``explore.api_keys_file``) and the call carried
    none, or one the service does not know."""

    status_code = grpc.StatusCode.UNAUTHENTICATED

    def __init__(self, offered: bool) -> None:
        what = "an unknown API key" if offered else "no API key"
        super().__init__(
            f"Rank needs an app's API key (authorization: Bearer <key>) and got {what}; "
            "`feedrank api-keys add APP` makes one"
        )


class UnexpectedRankError(ExploreError):
    """A failure no stage of Rank anticipated: logged with its traceback and the
    request's user, counted, and answered ``INTERNAL``, never ``UNKNOWN``."""

    status_code = grpc.StatusCode.INTERNAL

    def __init__(self, error: Exception) -> None:
        super().__init__(f"internal error while ranking: {type(error).__name__}: {error}")


class ModelNotLoaded(ExploreError):
    """No model and index are loaded yet (or the server is shutting down)."""

    status_code = grpc.StatusCode.UNAVAILABLE


class DeadlineExpired(ExploreError):
    """The caller's deadline passed; the remaining stages were not run."""

    status_code = grpc.StatusCode.DEADLINE_EXCEEDED


class ModelUnavailable(ExploreError):
    """A model version could not be fetched now (the deploy service is unreachable, busy
    or broke off the download); the plan is tried again at the next poll while the
    current version keeps serving. Never sent to a Rank caller."""

    status_code = grpc.StatusCode.UNAVAILABLE

    def __init__(self, version: str, reason: str) -> None:
        super().__init__(f"model version {version} unavailable: {reason}")
        self.version = version
        self.reason = reason


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
