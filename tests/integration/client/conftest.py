"""A real Ranking gRPC server for the client tests: the explore suite's own fixture."""

from __future__ import annotations

from tests.integration.explore.conftest import (  # the same server the explore tests use
    clock,
    ranking_server,
    serving_state,
)

__all__ = ["clock", "ranking_server", "serving_state"]
