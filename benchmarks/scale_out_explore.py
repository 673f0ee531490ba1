"""The scale-out benchmark's explore cluster: a world on private topics, replicas, balancers.

The replicas are the cluster topology's own (``ExploreReplicaComponent``: ``feedrank
serve`` processes, each in its own process group) and the balancer is its HAProxy
(``BalancerComponent``), on free ports, started by the stack's components exactly as
``feedrank up --topology cluster`` starts them. :func:`group_cpu_s` reads what a
process group has spent on the CPU, so a measurement can say what one Rank cost each
piece.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka.admin import AdminClient

from benchmarks.process_usage import CLOCK_TICKS_PER_S, stat_fields
from benchmarks.progress import progress
from feedrank.core.kafka_topics import TopicSpec, ensure_topics
from feedrank.core.settings import Settings, load_settings
from feedrank.simulate.world import generate_world, world_config
from feedrank.stack.balancer import BalancerComponent
from feedrank.stack.explore_replicas import ExploreReplicaComponent, explore_cluster_components
from feedrank.stack.process import ManagedProcess
from tests.support.catalogue_topics import private_entity_topics, publish_world_to
from tests.support.kafka import consecutive_free_ports, free_port

DECISION_PARTITIONS = 3
DECISION_RETENTION_MS = 3_600_000
STOP_GRACE_S = 20.0

say = progress("scale-out")


@dataclass(frozen=True)
class WorldSize:
    posts: int
    users: int


def cluster_settings(
    bootstrap: str, work: Path, world: WorldSize, *, replicas: int, workers: int, limit: int
) -> Settings:
    """Settings for ``replicas`` replicas of ``workers`` workers each on free ports, a
    world of ``world`` published to private topics, decisions logged to a private topic."""
    catalogue = private_entity_topics(bootstrap, "scale-out")
    decisions = f"scale-out.decisions.{uuid.uuid4().hex[:8]}"
    ensure_topics(
        AdminClient({"bootstrap.servers": bootstrap}),
        [TopicSpec(decisions, DECISION_PARTITIONS, 1, DECISION_RETENTION_MS)],
    )
    settings = load_settings(
        kafka={"bootstrap_servers": bootstrap},
        topics={
            "decisions": decisions,
            "posts": catalogue.posts,
            "users": catalogue.users,
            "graph": catalogue.graph,
        },
        world={
            "num_posts": world.posts,
            "num_users": world.users,
            "num_creators": max(world.posts // 50, 10),
        },
        paths={"state_dir": work / "state"},
        ports={"ranking_grpc": free_port()},
        # Rank alone: no feature updater reading the topics beside the load (as rank_load).
        explore={"workers": workers, "default_limit": limit, "feature_updates": False},
        cluster={
            "explore_replicas": replicas,
            "explore_first_grpc_port": consecutive_free_ports(replicas),
            "explore_first_metrics_port": consecutive_free_ports(replicas),
            "balancer_stats_port": free_port(),
        },
    )
    started = time.perf_counter()
    publish_world_to(
        bootstrap, catalogue, generate_world(world_config(settings.world, int(time.time() * 1000)))
    )
    elapsed = time.perf_counter() - started
    say(f"published {world.posts:,} posts, {world.users:,} users in {elapsed:.1f}s")
    return settings


@dataclass
class ExploreCluster:
    """Every replica of the settings, running; balancers over the first N on demand."""

    settings: Settings
    replicas: list[ExploreReplicaComponent]
    processes: dict[str, ManagedProcess] = field(default_factory=dict)

    def replica_pids(self, count: int) -> list[int]:
        """Process-group leaders of the first ``count`` replicas."""
        return [self.processes[replica.name].pid for replica in self.replicas[:count]]

    @contextmanager
    def balancer(self, count: int) -> Iterator[tuple[BalancerComponent, int]]:
        """HAProxy over the first ``count`` replicas on ports of its own; yields it and
        its process-group leader, stopped on exit."""
        settings = self.settings.model_copy(
            update={
                "ports": self.settings.ports.model_copy(update={"ranking_grpc": free_port()}),
                "cluster": self.settings.cluster.model_copy(
                    update={"explore_replicas": count, "balancer_stats_port": free_port()}
                ),
            }
        )
        component = explore_cluster_components(settings)[-1]
        assert isinstance(component, BalancerComponent)
        process = component.start(tie_to_parent=True)
        try:
            component.wait_ready(process)
            say(f"balancer over {count} replica(s) ready on {component.endpoint}")
            yield component, process.pid
        finally:
            process.stop(grace_s=STOP_GRACE_S)


@contextmanager
def explore_cluster(settings: Settings) -> Iterator[ExploreCluster]:
    """Every replica of ``settings`` started at once, each awaited on its health."""
    components = explore_cluster_components(settings)
    replicas = [c for c in components if isinstance(c, ExploreReplicaComponent)]
    cluster = ExploreCluster(settings, replicas)
    started = time.perf_counter()
    try:
        for replica in replicas:
            cluster.processes[replica.name] = replica.start(tie_to_parent=True)
        for replica in replicas:
            replica.wait_ready(cluster.processes[replica.name])
        say(f"{len(replicas)} replica(s) SERVING after {time.perf_counter() - started:.1f}s")
        yield cluster
    finally:
        for process in reversed(cluster.processes.values()):
            process.stop(grace_s=STOP_GRACE_S)


def group_cpu_s(leaders: list[int]) -> float:
    """CPU seconds (user + system) spent so far by the live processes of the process
    groups led by ``leaders`` (a replica's workers are in its group)."""
    groups = set(leaders)
    total_ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = stat_fields((entry / "stat").read_text())
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[2]) in groups:  # the process group
            total_ticks += int(fields[11]) + int(fields[12])
    return total_ticks / CLOCK_TICKS_PER_S
