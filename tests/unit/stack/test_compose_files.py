"""The files docker-compose mounts are their renderings (never stale), name nothing of this
machine, and keep the local stack's settings for everything but the placement."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from feedrank.core.settings import Settings, load_settings
from feedrank.stack import compose_files
from feedrank.stack.balancer import ReplicaAddress, render_config
from feedrank.stack.components import StackError
from feedrank.stack.compose_files import (
    COMPOSE_FILES,
    DOCKER_DNS,
    PER_TASKMANAGER,
    PROMETHEUS_REPORTER,
    REGENERATE,
    compose_flink_configuration,
    compose_haproxy_config,
    compose_settings,
    rendered_compose_files,
)
from feedrank.stack.flink_cluster import cluster_configuration
from feedrank.streaming.connector_jar import connector_jar_path

ROOT = Path(__file__).resolve().parents[3]
# Keys whose compose value differs from the local stack's: where things are.
PLACEMENT = {
    "jobmanager.bind-host",
    "jobmanager.rpc.address",
    "rest.address",
    "rest.bind-address",
    "taskmanager.bind-host",
    "python.executable",
    "python.client.executable",
    "pipeline.jars",
    "execution.checkpointing.dir",
    "execution.checkpointing.savepoint-dir",
}


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The compose containers' settings, whatever this shell's FEEDRANK_* variables say."""
    for key in [key for key in os.environ if key.startswith("FEEDRANK_")]:
        monkeypatch.delenv(key)
    return compose_settings()


@pytest.fixture
def local_configuration(tmp_path: Path) -> dict[str, str]:
    """The local stack's session cluster configuration (its connector jar a stand-in)."""
    local = load_settings(paths={"state_dir": tmp_path / "state", "jar_cache": tmp_path / "jars"})
    jar = connector_jar_path(local)
    jar.parent.mkdir(parents=True)
    jar.touch()
    return cluster_configuration(local)


@pytest.mark.parametrize("path", sorted(COMPOSE_FILES), ids=str)
def test_the_checked_in_file_is_its_rendering(settings: Settings, path: Path) -> None:
    rendered = rendered_compose_files(settings)[path]
    checked_in = (ROOT / path).read_text() if (ROOT / path).is_file() else ""
    assert checked_in == rendered, f"{path} is stale: run `{REGENERATE}` in the repository root"


def test_flink_config_is_the_local_stacks_but_for_where_things_are(
    settings: Settings, local_configuration: dict[str, str]
) -> None:
    compose = compose_flink_configuration(settings)
    assert set(compose) == set(local_configuration) - set(PER_TASKMANAGER) | set(
        PROMETHEUS_REPORTER
    )
    same = set(local_configuration) - PLACEMENT - set(PER_TASKMANAGER)
    assert {key: compose[key] for key in same} == {key: local_configuration[key] for key in same}
    local_values = ("127.0.0.1", "localhost", sys.executable, "/tmp", str(Path.home()))
    assert [key for key, value in compose.items() if any(v in value for v in local_values)] == []
    assert compose["execution.checkpointing.dir"] == "file:///var/lib/feedrank/flink/checkpoints"


def test_a_local_key_the_renderer_does_not_place_is_refused(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def with_a_new_directory(local: Settings) -> dict[str, str]:
        return {**cluster_configuration(local), "io.tmp.dirs": str(local.paths.state_dir)}

    monkeypatch.setattr(compose_files, "cluster_configuration", with_a_new_directory)
    with pytest.raises(StackError, match=r"io\.tmp\.dirs name this machine"):
        compose_flink_configuration(settings)


def test_the_compose_balancer_finds_each_replica_by_its_service_name(settings: Settings) -> None:
    config = compose_haproxy_config(settings)
    port = settings.ports.ranking_grpc
    for replica in range(1, settings.cluster.explore_replicas + 1):
        assert f"    server explore-{replica} explore-{replica}:{port}\n" in config
    assert f"    nameserver dns {DOCKER_DNS}\n" in config
    assert "init-addr last,libc,none resolvers dns" in config
    assert f"bind 0.0.0.0:{port} proto h2" in config


def test_the_local_balancer_resolves_nothing(settings: Settings) -> None:
    config = render_config(settings, [ReplicaAddress("explore-1", 50061)])
    assert "resolvers" not in config
    assert "init-addr" not in config
    assert "    server explore-1 127.0.0.1:50061\n" in config
