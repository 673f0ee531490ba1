"""The configuration files docker-compose.yml mounts, rendered by the local stack's own
renderers for the compose network and the feedrank image.

* ``deploy/haproxy/haproxy.cfg``: :func:`feedrank.stack.balancer.render_config` with
  the replicas named by their compose services (``explore-1`` …, each serving Rank on
  ``ports.ranking_grpc``), found through Docker's DNS so that the balancer starts
  before them and follows a recreated one.
* ``deploy/flink/config.yaml``: :func:`feedrank.stack.flink_cluster.cluster_configuration`,
  every key that names this machine (hosts, the Python interpreter, the connector jar,
  the checkpoint and savepoint directories) given its compose value, plus Flink's
  Prometheus reporter. Each TaskManager's command names its own host.

``python -m feedrank.stack.compose_files`` (in the repository root) writes both from the
settings' defaults, never from this shell's ``FEEDRANK_*`` variables; a unit test fails
when a checked-in file is not its rendering.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from feedrank.core.settings import LOOPBACK, Settings, load_settings
from feedrank.stack.balancer import ReplicaAddress, render_config
from feedrank.stack.components import StackError
from feedrank.stack.explore_replicas import replica_name
from feedrank.stack.flink_cluster import cluster_configuration
from feedrank.streaming.connector_jar import connector_jar_path

DOCKER_DNS = "127.0.0.11:53"  # Docker's embedded DNS server, on every compose network
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - containers are reached on their network address
JOBMANAGER_HOST = "jobmanager"  # the JobManager's compose service
# Where the feedrank image (deploy/docker/Dockerfile) keeps its interpreter and jars, and
# the state directory of its containers (FEEDRANK_PATHS__STATE_DIR in docker-compose.yml).
IMAGE_PYTHON = "/usr/local/bin/python"
IMAGE_JAR_CACHE = Path("/opt/feedrank/jars")
CONTAINER_STATE_DIR = Path("/var/lib/feedrank")
# Flink's Prometheus reporter (a plugin PyFlink ships) on every JobManager and TaskManager.
FLINK_METRICS_PORT = 9249
PROMETHEUS_REPORTER = {
    "metrics.reporter.prom.factory.class": (
        "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"
    ),
    "metrics.reporter.prom.port": str(FLINK_METRICS_PORT),
}
# Keys a TaskManager's command sets (-D), one value per TaskManager.
PER_TASKMANAGER = ("taskmanager.host",)

HAPROXY_CONFIG = Path("deploy/haproxy/haproxy.cfg")
FLINK_CONFIG = Path("deploy/flink/config.yaml")
REGENERATE = "python -m feedrank.stack.compose_files"


def compose_settings() -> Settings:
    """The compose containers' settings, as far as the rendered files read them: the
    defaults, with the image's paths and every port bound on all interfaces."""
    return load_settings(
        paths={"state_dir": CONTAINER_STATE_DIR, "jar_cache": IMAGE_JAR_CACHE},
        ports={"bind_host": ALL_INTERFACES},
        tls={"insecure": True},
    )


def compose_haproxy_config(settings: Settings) -> str:
    """haproxy.cfg of the compose ``balancer`` in front of ``explore-1`` … ``explore-N``."""
    names = [replica_name(replica) for replica in range(1, settings.cluster.explore_replicas + 1)]
    replicas = [ReplicaAddress(name, settings.ports.ranking_grpc, host=name) for name in names]
    header = f"# docker-compose's balancer: `{REGENERATE}` writes this file.\n"
    return header + render_config(settings, replicas, resolver=DOCKER_DNS)


def compose_flink_configuration(settings: Settings) -> dict[str, str]:
    """The session cluster's keys for the compose JobManager and TaskManagers."""
    with tempfile.TemporaryDirectory(prefix="feedrank-compose-") as scratch:
        local = _configuration_on_this_machine(settings, Path(scratch))
        placement = {
            "jobmanager.bind-host": ALL_INTERFACES,
            "jobmanager.rpc.address": JOBMANAGER_HOST,
            "rest.address": JOBMANAGER_HOST,
            "rest.bind-address": ALL_INTERFACES,
            "taskmanager.bind-host": ALL_INTERFACES,
            "python.executable": IMAGE_PYTHON,
            "python.client.executable": IMAGE_PYTHON,
            "pipeline.jars": connector_jar_path(settings).as_uri(),
            # A shared volume in compose; a real deployment points both at s3:// (or
            # another file system every Flink process and the join's submitter see).
            "execution.checkpointing.dir": settings.paths.flink_checkpoint_dir.as_uri(),
            "execution.checkpointing.savepoint-dir": settings.paths.flink_savepoint_dir.as_uri(),
        }
        renamed = sorted(set(placement) - set(local))
        if renamed:
            raise StackError(f"cluster_configuration no longer sets {', '.join(renamed)}")
        configuration = {
            key: value
            for key, value in {**local, **placement, **PROMETHEUS_REPORTER}.items()
            if key not in PER_TASKMANAGER
        }
        markers = (scratch, sys.executable, LOOPBACK, "localhost")
        _refuse_local_values(configuration, markers)
    return configuration


def _configuration_on_this_machine(settings: Settings, scratch: Path) -> dict[str, str]:
    """``cluster_configuration`` with the paths in ``scratch``: it creates the snapshot
    directories and checks that the connector jar exists, here a stand-in for the
    image's."""
    paths = settings.paths.model_copy(
        update={"state_dir": scratch / "state", "jar_cache": scratch / "jars"}
    )
    local = settings.model_copy(update={"paths": paths})
    stand_in = connector_jar_path(local)
    stand_in.parent.mkdir(parents=True)
    stand_in.touch()
    return cluster_configuration(local)


def _refuse_local_values(configuration: dict[str, str], markers: tuple[str, ...]) -> None:
    local = sorted(k for k, v in configuration.items() if any(m in v for m in markers))
    if local:
        raise StackError(
            f"the Flink keys {', '.join(local)} name this machine: give them their compose "
            "value in feedrank/stack/compose_files.py"
        )


def compose_flink_config_yaml(settings: Settings) -> str:
    """``config.yaml``, written the way the local stack writes its own."""
    lines = [
        "# docker-compose's Flink session cluster (JobManager and TaskManagers): the local",
        "# stack's configuration (feedrank/stack/flink_cluster.py) with the compose hosts and",
        "# the image's paths; each TaskManager's command sets taskmanager.host to its service.",
        f"# `{REGENERATE}` writes this file.",
        *(
            f"{key}: {json.dumps(value)}"
            for key, value in sorted(compose_flink_configuration(settings).items())
        ),
    ]
    return "\n".join(lines) + "\n"


COMPOSE_FILES: dict[Path, Callable[[Settings], str]] = {
    HAPROXY_CONFIG: compose_haproxy_config,
    FLINK_CONFIG: compose_flink_config_yaml,
}


def rendered_compose_files(settings: Settings) -> dict[Path, str]:
    """Each file's path (relative to the repository root) and its text."""
    return {path: render(settings) for path, render in COMPOSE_FILES.items()}


def main() -> None:
    root = Path.cwd()
    if not (root / "docker-compose.yml").is_file():
        raise SystemExit(f"no docker-compose.yml in {root}: run this in the repository root")
    for key in [key for key in os.environ if key.startswith("FEEDRANK_")]:
        del os.environ[key]  # the containers' settings, not this shell's
    for path, text in rendered_compose_files(compose_settings()).items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
