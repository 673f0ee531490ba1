"""Explore replicas of the cluster topology: ``explore-1`` … ``explore-N``, each a
``feedrank serve`` process of its own, behind the balancer (``balancer``).

Replica k serves Rank on ``cluster.explore_first_grpc_port + k - 1`` and its /metrics
on ``cluster.explore_first_metrics_port + k - 1``; the balancer owns
``ports.ranking_grpc``. What a replica would otherwise share with its siblings on disk:

* ``<state_dir>/prometheus/explore``, its workers' metric files, which ``feedrank serve``
  empties at start and aggregates on its /metrics: shared, a restarting replica would
  wipe its siblings' files and each /metrics would sum every replica. So each replica
  gets a state dir of its own, ``<state_dir>/explore-replicas/explore-k``.
* the model registry: only read (versions are immutable), so the replicas read the
  stack's, ``paths.registry``, pinned here because the state dir moved.
* nothing else: the catalogue is replayed from Kafka into memory, decisions wait in the
  Kafka producer's memory, the Kafka consumers are assigned partitions (no shared group).

Logs stay with the stack's, ``<log_dir>/explore-k.log``.
"""

from __future__ import annotations

from pathlib import Path

from feedrank.core.settings import Settings
from feedrank.stack.balancer import BalancerComponent, ReplicaAddress
from feedrank.stack.components import Component, GrpcServiceComponent


def replica_settings(settings: Settings, replica: int) -> Settings:
    """``settings`` for replica ``replica`` (1, 2, …): its own ports and state dir, the
    stack's registry."""
    offset = replica - 1
    cluster = settings.cluster
    ports = settings.ports.model_copy(
        update={
            "ranking_grpc": cluster.explore_first_grpc_port + offset,
            "explore_metrics": cluster.explore_first_metrics_port + offset,
        }
    )
    paths = settings.paths.model_copy(
        update={
            "state_dir": settings.paths.state_dir / "explore-replicas" / replica_name(replica),
            "registry_dir": settings.paths.registry,
        }
    )
    return settings.model_copy(update={"ports": ports, "paths": paths})


def replica_name(replica: int) -> str:
    return f"explore-{replica}"


class ExploreReplicaComponent(GrpcServiceComponent):
    """``feedrank serve`` as replica ``explore-k`` of the cluster topology."""

    subcommand, health_service = "serve", "feedrank.v1.Ranking"
    ready_timeout_s = 300.0  # replays the catalogue and builds its model first

    def __init__(self, settings: Settings, replica: int) -> None:
        if not 1 <= replica <= settings.cluster.explore_replicas:
            raise ValueError(
                f"replica {replica} is outside 1..{settings.cluster.explore_replicas} "
                "(cluster.explore_replicas)"
            )
        super().__init__(replica_settings(settings, replica))
        self.name = replica_name(replica)
        self.stack_log_dir = settings.paths.log_dir

    @property
    def log_file(self) -> Path:
        return self.stack_log_dir / f"{self.name}.log"

    def grpc_port(self) -> int:
        return self.settings.ports.ranking_grpc

    def metrics_port(self) -> int:
        return self.settings.ports.explore_metrics

    def address(self) -> ReplicaAddress:
        return ReplicaAddress(self.name, self.grpc_port())


def explore_replicas(settings: Settings) -> list[ExploreReplicaComponent]:
    return [
        ExploreReplicaComponent(settings, replica)
        for replica in range(1, settings.cluster.explore_replicas + 1)
    ]


def explore_cluster_components(settings: Settings) -> list[Component]:
    """The replicas, then the balancer in front of them (start order; stop is reverse)."""
    replicas = explore_replicas(settings)
    balancer = BalancerComponent(settings, [replica.address() for replica in replicas])
    return [*replicas, balancer]
