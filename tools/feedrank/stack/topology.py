"""Which components the local stack runs: the single-node topology or the cluster one.

``single`` (the default): one Kafka broker, deploy, one explore host, the join on
PyFlink's mini-cluster, the learner. ``cluster`` (``feedrank up --topology cluster``):
a KRaft cluster (``kafka-1..N``), deploy, explore replicas behind HAProxy, a Flink
session cluster (a JobManager and TaskManagers) running the join as a real job, the
learner. ``up`` remembers the topology in the run directory, so ``status`` and ``down``
cover every piece without being told again.
"""

from __future__ import annotations

from pathlib import Path

from feedrank.core.clock import SystemClock
from feedrank.core.settings import Settings
from feedrank.core.settings.topology import Topology
from feedrank.stack.components import (
    Component,
    DeployComponent,
    JoinComponent,
    LearnerComponent,
    StackError,
    default_components,
)
from feedrank.stack.explore_replicas import explore_cluster_components
from feedrank.stack.flink_cluster import flink_cluster_components
from feedrank.stack.kafka_cluster import kafka_cluster_components

TOPOLOGIES: tuple[Topology, ...] = ("single", "cluster")


def stack_components(settings: Settings) -> list[Component]:
    """The components of ``settings.cluster.topology``, in start order (stop: reverse);
    with ``cluster.only``, those it names."""
    return _chosen(_topology_components(settings), settings.cluster.only)


def _topology_components(settings: Settings) -> list[Component]:
    if settings.cluster.topology == "single":
        return default_components(settings)
    # Deploy before explore (replicas follow its plan and fetch models from it); the
    # Flink cluster before the join job that runs on it; the learner last.
    return [
        *kafka_cluster_components(settings),
        DeployComponent(settings),
        *explore_cluster_components(settings),
        *flink_cluster_components(settings),
        ClusterJoinComponent(settings),
        LearnerComponent(settings),
    ]


def _chosen(components: list[Component], only: list[str]) -> list[Component]:
    """The components named in ``only`` (a name or a name's prefix before '-'), all
    when it is empty; a name that matches nothing is an error."""
    if not only:
        return components
    chosen = [c for c in components if c.name in only or c.name.split("-")[0] in only]
    known = {c.name for c in components} | {c.name.split("-")[0] for c in components}
    unknown = sorted(set(only) - known)
    if unknown:
        raise StackError(
            f"cluster.only names no component: {', '.join(unknown)} "
            f"(the stack's: {', '.join(c.name for c in components)})"
        )
    return chosen


class ClusterJoinComponent(JoinComponent):
    """``feedrank join`` submitting the join to the session cluster: ``flink run`` alone
    takes up to a minute on a loaded machine, then the job starts its tasks."""

    ready_timeout_s = 420.0


def with_topology(settings: Settings, topology: Topology) -> Settings:
    """``settings`` for ``topology``, validated again: in the cluster, unless
    ``kafka.bootstrap_servers`` names brokers, clients bootstrap from every Kafka node."""
    values = settings.model_dump()
    values["cluster"]["topology"] = topology
    if settings.kafka.bootstrap_servers == settings.local_cluster_bootstrap():
        values["kafka"]["bootstrap_servers"] = None  # filled in for the cluster, not by a user
    return type(settings)(**values)


def wired_settings(settings: Settings) -> Settings:
    """Settings that make the stack's processes one loop: one world, explore following
    deploy (and, in the cluster topology, fetching its models from deploy and answering
    only once a decision is logged)."""
    world, explore = settings.world, settings.explore
    if world.start_ms == 0:
        world = world.model_copy(update={"start_ms": SystemClock().now_ms()})
    if explore.deploy_address is None and explore.plan_file is None:
        address = f"127.0.0.1:{settings.ports.deploy_grpc}"
        explore = explore.model_copy(update={"deploy_address": address})
    if settings.cluster.topology == "cluster":
        # Replicas share no disk with the registry, and one can be killed at any moment:
        # a call answers only once its decision is on Kafka.
        explore = explore.model_copy(
            update={"model_source": "deploy", "decision_delivery": "acked"}
        )
    return settings.model_copy(update={"world": world, "explore": explore})


def topology_file(settings: Settings) -> Path:
    return settings.paths.run_dir / "topology"


def remember_topology(settings: Settings) -> None:
    path = topology_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{settings.cluster.topology}\n")


def remembered_topology(settings: Settings) -> Topology | None:
    """The topology the last ``up`` on this state directory started, if it said."""
    path = topology_file(settings)
    if not path.is_file():
        return None
    text = path.read_text().strip()
    for topology in TOPOLOGIES:
        if text == topology:
            return topology
    raise StackError(f"{path} names no topology ({text!r}); expected one of {TOPOLOGIES}")
