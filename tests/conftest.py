"""Test-suite switches: unit tests run by default, integration tests with --integration.

Integration tests live under tests/integration/ and start real servers (Kafka broker,
Flink mini-cluster, gRPC). They are never skipped silently: without --integration the
skip reason says how to run them, and the README's test command always passes it.

``make integration`` runs them in two parts: on two workers (pytest-xdist) the tests
not marked ``alone``, then, by themselves, those that are: the ones that measure time
or throughput under load, start a whole cluster, or load the machine themselves
(:data:`ALONE`, paths under tests/integration/).
"""

from __future__ import annotations

from pathlib import Path

import pytest

INTEGRATION_DIR = Path(__file__).parent / "integration"
ALONE = (
    "benchmarks",  # benchmark smokes: rates and latencies
    "chaos",  # the cluster topology under load, faults
    "cli/test_stack_cli.py",  # the whole stack and its demo
    "new_user",  # the whole loop for a new app
    "explore/test_hot_swap.py",  # p99 under load
    "explore/test_acked_decisions.py",  # how long calls wait on a dead broker
    "explore/test_serve_cli.py",  # worker processes under load
    "explore/test_catalogue_serving.py",  # serving latency while the catalogue moves
    "learners/test_learner_broker_outage.py",  # a broker crash timed under the learner
    "learners/test_distributed_training.py",  # process groups, one per core
    "stack/test_kafka_cluster.py",  # three brokers, a leader killed
    "stack/test_explore_balancer.py",  # replicas behind HAProxy, timed failover
    "streaming/test_join_on_flink_cluster.py",  # a JobManager and two TaskManagers
)


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
        path = Path(str(item.fspath))
        if INTEGRATION_DIR in path.parents:
            item.add_marker(pytest.mark.integration)
            inside = path.relative_to(INTEGRATION_DIR).as_posix()
            if any(inside == alone or inside.startswith(f"{alone}/") for alone in ALONE):
                item.add_marker(pytest.mark.alone)
            if not run_integration:
                item.add_marker(skip)
