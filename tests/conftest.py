"""Test-suite switches: unit tests run by default, integration tests with --integration.

Integration tests live under tests/integration/ and start real servers (Kafka broker,
Flink mini-cluster, gRPC). They are never skipped silently: without --integration the
skip reason says how to run them, and the README's test command always passes it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

INTEGRATION_DIR = Path(__file__).parent / "integration"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--integration",
        action="store_true",
        default=False,
        help="also run tests against the real local Kafka broker, Flink and gRPC servers",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run_integration = config.getoption("--integration")
    skip = pytest.mark.skip(reason="integration test: run with --integration (make test does)")
    for item in items:
        if INTEGRATION_DIR in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)
            if not run_integration:
                item.add_marker(skip)
