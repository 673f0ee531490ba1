from __future__ import annotations

import pytest
from pyflink.table import TableEnvironment

from feedrank.core.settings import Settings
from feedrank.stack.flink import FlinkJobOptions, create_table_environment
from feedrank.stack.jars import JarLocations


@pytest.fixture
def table_env(settings_for_kafka: Settings, jars: JarLocations) -> TableEnvironment:
    """A fresh TableEnvironment on PyFlink's local mini-cluster with the Kafka connector."""
    options = FlinkJobOptions(parallelism=2, checkpoint_interval_s=1.0)
    return create_table_environment(settings_for_kafka, options)
