"""The session cluster's rendered configuration, class path and components (nothing started)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from feedrank.core.settings import Settings, load_settings
from feedrank.stack.flink_cluster import (
    FlinkJobManagerComponent,
    FlinkTaskManagerComponent,
    cluster_conf_dir,
    flatten_yaml_mapping,
    flink_cluster_components,
    link_cluster_lib,
    write_cluster_conf,
)
from feedrank.streaming.connector_jar import MissingConnectorJarError, connector_jar_path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = load_settings(
        paths={"state_dir": tmp_path / "state", "jar_cache": tmp_path / "jars"},
        cluster={"flink_rest_port": 18081, "flink_rpc_port": 16123, "flink_taskmanagers": 3},
        flink={"parallelism": 4},
    )
    jar = connector_jar_path(settings)
    jar.parent.mkdir(parents=True)
    jar.write_bytes(b"")
    return settings


def test_flattening_keeps_the_nested_scalars_of_a_flink_config() -> None:
    text = "# a comment\nenv:\n  java:\n    opts:\n      all: --add-opens=x\njobmanager:\n"
    text += "  rpc:\n    port: 6123\n  bind-host: localhost\nparallelism:\n  default: 1\n"
    assert flatten_yaml_mapping(text) == {
        "env.java.opts.all": "--add-opens=x",
        "jobmanager.rpc.port": "6123",
        "jobmanager.bind-host": "localhost",
        "parallelism.default": "1",
    }


def test_config_yaml_binds_everything_locally_with_retained_rocksdb_checkpoints(
    settings: Settings,
) -> None:
    conf = yaml.safe_load((write_cluster_conf(settings) / "config.yaml").read_text())
    assert conf["jobmanager.rpc.address"] == conf["rest.bind-address"] == "127.0.0.1"
    assert conf["jobmanager.rpc.port"] == "16123"
    assert conf["rest.port"] == "18081"
    assert conf["taskmanager.numberOfTaskSlots"] == "1"
    assert conf["taskmanager.memory.process.size"] == "1600m"
    assert conf["parallelism.default"] == "4"
    assert conf["state.backend.type"] == "rocksdb"
    assert conf["execution.checkpointing.incremental"] == "true"
    checkpoints = (settings.paths.flink_checkpoint_dir).resolve().as_uri()
    assert conf["execution.checkpointing.dir"] == checkpoints
    assert conf["execution.checkpointing.externalized-checkpoint-retention"] == (
        "RETAIN_ON_CANCELLATION"
    )
    assert conf["restart-strategy.type"] == "exponential-delay"
    assert conf["python.executable"] == conf["python.client.executable"] == sys.executable
    assert conf["pipeline.jars"] == connector_jar_path(settings).resolve().as_uri()
    # PyFlink's own JVM options (Java 17 module opens) are kept.
    assert "--add-opens=java.base/java.lang=ALL-UNNAMED" in conf["env.java.opts.all"]
    assert (cluster_conf_dir(settings) / "log4j-console.properties").is_file()


def test_no_config_without_the_connector_jar(settings: Settings) -> None:
    connector_jar_path(settings).unlink()
    with pytest.raises(MissingConnectorJarError, match="feedrank setup"):
        write_cluster_conf(settings)


def test_the_class_path_adds_flink_python_and_can_be_linked_again(settings: Settings) -> None:
    first = sorted(path.name for path in link_cluster_lib(settings).iterdir())
    assert any(name.startswith("flink-dist-") for name in first)
    assert any(name.startswith("flink-python-") for name in first)
    assert sorted(path.name for path in link_cluster_lib(settings).iterdir()) == first


def test_one_jobmanager_then_one_component_per_taskmanager(settings: Settings) -> None:
    components = flink_cluster_components(settings)
    assert [component.name for component in components] == [
        "flink-jobmanager",
        "flink-taskmanager-1",
        "flink-taskmanager-2",
        "flink-taskmanager-3",
    ]
    assert isinstance(components[0], FlinkJobManagerComponent)
    assert components[0].endpoint == "http://127.0.0.1:18081"
    taskmanager = components[2]
    assert isinstance(taskmanager, FlinkTaskManagerComponent)
    assert taskmanager.dynamic_properties() == {"taskmanager.resource-id": "flink-taskmanager-2"}
    environment = taskmanager.environment()
    assert environment["FLINK_CONF_DIR"] == str(cluster_conf_dir(settings).resolve())
    assert Path(environment["FLINK_LOG_DIR"]).name == "flink-taskmanager-2"
