"""A Flink standalone session cluster on this machine, from the scripts inside PyFlink.

The cluster topology runs the join as a real job (``feedrank join --jobmanager``, see
:mod:`feedrank.streaming.cluster_join`) on one JobManager and
``cluster.flink_taskmanagers`` TaskManagers, each its own process started with
``pyflink/bin/jobmanager.sh`` / ``taskmanager.sh start-foreground`` (so any one can
be SIGKILLed and started again). They share one rendered configuration directory,
``<state_dir>/flink/cluster/conf``: Flink 2's ``config.yaml`` with everything on
127.0.0.1 (RPC ``cluster.flink_rpc_port``, REST ``cluster.flink_rest_port``), RocksDB
with incremental checkpoints retained under ``paths.flink_checkpoint_dir`` (a real
deployment points them at s3:// or another shared file system), an exponential-delay
restart strategy, this venv's Python for the Python operators, and the Kafka
connector jar.

Without ZooKeeper or Kubernetes HA, a JobManager that dies forgets its jobs: the join's
supervisor resubmits from the newest retained checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

from feedrank.core.settings import Settings
from feedrank.stack.components import Component, Health, StackError, ensure_port_free
from feedrank.stack.process import ManagedProcess
from feedrank.streaming.connector_jar import require_connector_jar
from feedrank.streaming.flink_configuration import (
    retained_snapshot_configuration,
    state_backend_configuration,
)
from feedrank.streaming.flink_rest import FlinkRestClient, FlinkRestError
from feedrank.streaming.pyflink_distribution import flink_script, pyflink_home

HOST = "127.0.0.1"
JAVA_OPTIONS = "env.java.opts.all"
# Logging configurations the start scripts expect in the configuration directory.
LOGGING_FILES = ("log4j-console.properties", "log4j-cli.properties", "log4j.properties")
# The first restart waits 5 s, longer than the JobManager takes to notice a dead
# TaskManager (two failed heartbeats, 4 s): restarted after 1 s, the job was failed over
# a second time while its tasks were starting again, and cancelling the reward
# intake's pandas UDF then can shut the surviving TaskManager down (docs/streaming.md).
RESTART_STRATEGY = {
    "restart-strategy.type": "exponential-delay",
    "restart-strategy.exponential-delay.initial-backoff": "5 s",
    "restart-strategy.exponential-delay.backoff-multiplier": "2.0",
    "restart-strategy.exponential-delay.max-backoff": "30 s",
    "restart-strategy.exponential-delay.reset-backoff-threshold": "10 min",
    "restart-strategy.exponential-delay.jitter-factor": "0.1",
}
# A dead TaskManager is noticed after two failed heartbeats (4 s) rather than Flink's
# default 10 s interval; a live one under load has 20 s to answer.
HEARTBEATS = {"heartbeat.interval": "2 s", "heartbeat.timeout": "20 s"}


def cluster_conf_dir(settings: Settings) -> Path:
    return settings.paths.state_dir / "flink" / "cluster" / "conf"


def rest_url(settings: Settings) -> str:
    """The JobManager's REST API (and web UI)."""
    return f"http://{HOST}:{settings.cluster.flink_rest_port}"


def cluster_configuration(settings: Settings) -> dict[str, str]:
    """``config.yaml``'s keys: PyFlink's shipped defaults (its JVM options) and ours."""
    cluster = settings.cluster
    memory = f"{cluster.flink_process_memory_mb}m"
    packaged = flatten_yaml_mapping((pyflink_home() / "conf" / "config.yaml").read_text())
    # The console (the component's log file) shows warnings; the full log is Flink's own.
    java_options = f"{packaged.get(JAVA_OPTIONS, '')} -Dconsole.log.level=WARN".strip()
    return {
        **packaged,
        JAVA_OPTIONS: java_options,
        "jobmanager.bind-host": HOST,
        "jobmanager.rpc.address": HOST,
        "jobmanager.rpc.port": str(cluster.flink_rpc_port),
        "jobmanager.memory.process.size": memory,
        "rest.address": HOST,
        "rest.bind-address": HOST,
        "rest.port": str(cluster.flink_rest_port),
        "taskmanager.bind-host": HOST,
        "taskmanager.host": HOST,
        "taskmanager.numberOfTaskSlots": str(cluster.flink_slots_per_taskmanager),
        "taskmanager.memory.process.size": memory,
        "parallelism.default": str(settings.flink.parallelism),
        **state_backend_configuration(settings.flink.state_backend),
        **retained_snapshot_configuration(settings),
        **RESTART_STRATEGY,
        **HEARTBEATS,
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
        "pipeline.jars": require_connector_jar(settings).resolve().as_uri(),
    }


def flatten_yaml_mapping(text: str) -> dict[str, str]:
    """``a:\\n  b: v`` → ``{"a.b": "v"}``: the nested scalars of a Flink ``config.yaml``
    such as PyFlink ships (maps and plain scalars only; no lists, no multi-line values)."""
    flat: dict[str, str] = {}
    parents: list[tuple[int, str]] = []
    for line in text.splitlines():
        content = line.strip()
        if not content or content.startswith("#"):
            continue
        indent = len(line) - len(line.lstrip(" "))
        key, _, value = content.partition(":")
        while parents and parents[-1][0] >= indent:
            parents.pop()
        if value.strip():
            flat[".".join([*(name for _, name in parents), key.strip()])] = value.strip()
        else:
            parents.append((indent, key.strip()))
    return flat


def cluster_lib_dir(settings: Settings) -> Path:
    return settings.paths.state_dir / "flink" / "cluster" / "lib"


def link_cluster_lib(settings: Settings) -> Path:
    """The cluster's class path: PyFlink's ``lib/`` plus ``opt/flink-python``, which a
    Python job's operators need on the JobManager and TaskManagers (the distribution
    keeps it in ``opt/``; the mini-cluster adds it by itself). Symbolic links, so the
    venv stays untouched; existing links stay (running TaskManagers read through them)."""
    directory = cluster_lib_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    home = pyflink_home()
    jars = [*(home / "lib").glob("*.jar"), *(home / "opt").glob("flink-python-*.jar")]
    for jar in jars:
        link = directory / jar.name
        if not link.is_symlink() or link.resolve() != jar.resolve():
            link.unlink(missing_ok=True)
            link.symlink_to(jar.resolve())
    for stale in set(directory.iterdir()) - {directory / jar.name for jar in jars}:
        stale.unlink()  # from another PyFlink version
    return directory


def write_cluster_conf(settings: Settings) -> Path:
    """Render the configuration directory every Flink process of the cluster reads."""
    directory = cluster_conf_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Rendered by feedrank (tools/feedrank/stack/flink_cluster.py); edits are overwritten.",
        *(
            f"{key}: {json.dumps(value)}"
            for key, value in sorted(cluster_configuration(settings).items())
        ),
    ]
    staged = directory / "config.yaml.new"
    staged.write_text("\n".join(lines) + "\n")
    staged.replace(directory / "config.yaml")  # whole, for a TaskManager starting meanwhile
    for name in LOGGING_FILES:
        shutil.copyfile(pyflink_home() / "conf" / name, directory / name)
    return directory


class FlinkProcessComponent:
    """One Flink JVM of the session cluster, started in the foreground by its script."""

    name = ""
    script = ""
    ready_timeout_s = 120.0
    poll_s = 0.5

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.rest = FlinkRestClient(rest_url(settings), timeout_s=3.0)

    @property
    def endpoint(self) -> str:
        return rest_url(self.settings)

    @property
    def tag(self) -> str:
        # Passed as a Flink dynamic property (-D), which keeps it in the JVM's command line.
        return f"feedrank.component={self.name}"

    @property
    def log_file(self) -> Path:
        return self.settings.paths.log_dir / f"{self.name}.log"

    def dynamic_properties(self) -> dict[str, str]:
        return {}

    def before_start(self) -> None:
        """Checks and preparation before the process is launched."""

    def start(self, *, tie_to_parent: bool) -> ManagedProcess:
        self.before_start()
        properties = [f"{key}={value}" for key, value in self.dynamic_properties().items()]
        command = [
            str(flink_script(self.script)),
            "start-foreground",
            *(part for value in [self.tag, *properties] for part in ("-D", value)),
        ]
        return ManagedProcess.launch(
            command,
            log_file=self.log_file,
            tie_to_parent=tie_to_parent,
            tag=self.tag,
            environment=self.environment(),
        )

    def environment(self) -> dict[str, str]:
        """Where the scripts find the configuration and put their logs and pid files."""
        flink_dir = self.settings.paths.state_dir / "flink" / "cluster"
        log_dir = self.settings.paths.log_dir / "flink-cluster" / self.name
        pid_dir = flink_dir / "pids" / self.name
        for directory in (log_dir, pid_dir):
            directory.mkdir(parents=True, exist_ok=True)
        return {
            **os.environ,
            "FLINK_CONF_DIR": str(cluster_conf_dir(self.settings).resolve()),
            "FLINK_LIB_DIR": str(cluster_lib_dir(self.settings).resolve()),
            "FLINK_LOG_DIR": str(log_dir.resolve()),
            "FLINK_PID_DIR": str(pid_dir.resolve()),
            "FLINK_IDENT_STRING": "feedrank",
        }

    def wait_ready(self, process: ManagedProcess) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        health = Health("unhealthy", "not started")
        while time.monotonic() < deadline:
            if not process.is_running():
                raise StackError(f"{self.name} exited during start-up; see {self.log_file}")
            health = self.probe()
            if health.state == "healthy":
                return
            time.sleep(self.poll_s)
        raise StackError(
            f"{self.name} was not ready after {self.ready_timeout_s:.0f}s ({health.detail}); "
            f"see {self.log_file}"
        )

    def probe(self) -> Health:
        raise NotImplementedError


class FlinkJobManagerComponent(FlinkProcessComponent):
    """The session cluster's JobManager: dispatcher, resource manager, REST API."""

    name, script = "flink-jobmanager", "jobmanager.sh"

    def before_start(self) -> None:
        cluster = self.settings.cluster
        ensure_port_free(cluster.flink_rest_port, owner="the Flink JobManager's REST API")
        ensure_port_free(cluster.flink_rpc_port, owner="the Flink JobManager's RPC")
        write_cluster_conf(self.settings)
        link_cluster_lib(self.settings)

    def probe(self) -> Health:
        try:
            overview = self.rest.overview()
        except FlinkRestError as error:
            return Health("unhealthy", str(error))
        return Health(
            "healthy",
            f"{overview.taskmanagers} TaskManagers, {overview.slots_available}/"
            f"{overview.slots_total} slots free, {overview.jobs_running} jobs running",
        )


class FlinkTaskManagerComponent(FlinkProcessComponent):
    """TaskManager ``index`` (1-based), registered under its own name as resource id."""

    script = "taskmanager.sh"

    def __init__(self, settings: Settings, index: int) -> None:
        super().__init__(settings)
        self.name = f"flink-taskmanager-{index}"

    def dynamic_properties(self) -> dict[str, str]:
        return {"taskmanager.resource-id": self.name}

    def before_start(self) -> None:
        if not (cluster_conf_dir(self.settings) / "config.yaml").is_file():
            raise StackError(
                f"{self.name} needs the Flink JobManager's configuration: start it first"
            )

    def probe(self) -> Health:
        try:
            registered = self.rest.taskmanager_slots(self.name)
        except FlinkRestError as error:
            return Health("unhealthy", str(error))
        if registered is None:
            return Health("unhealthy", "not registered with the JobManager")
        total, free = registered
        return Health("healthy", f"registered, {free}/{total} slots free")


def flink_cluster_components(settings: Settings) -> list[Component]:
    """The JobManager, then every TaskManager (start in this order, stop in reverse)."""
    taskmanagers = range(1, settings.cluster.flink_taskmanagers + 1)
    return [
        FlinkJobManagerComponent(settings),
        *(FlinkTaskManagerComponent(settings, index) for index in taskmanagers),
    ]
