"""Free ports for the chaos run's cluster topology, so it never meets a running stack.

Kafka node i listens on ``kafka + i*step`` (clients) and one above (controllers), so
the Kafka base is chosen with all of those free; the explore replicas take consecutive
ports for Rank and for metrics. Every port lies below the kernel's ephemeral range
(``tests.support.kafka.free_ports_at``): a port a client connection borrowed there could
stop a killed broker from binding its own port again.
"""

from __future__ import annotations

from dataclasses import dataclass

from feedrank.core.settings.topology import ClusterSettings
from tests.support.kafka import consecutive_free_ports, free_port, free_ports_at


@dataclass(frozen=True)
class ClusterPorts:
    kafka: int
    flink_rest: int
    flink_rpc: int
    explore_grpc: int
    explore_metrics: int
    balancer_stats: int
    services: dict[str, int]  # the [ports] group: balancer front, deploy, metrics


def cluster_ports(replicas: int = 2) -> ClusterPorts:
    cluster = ClusterSettings()
    step = cluster.kafka_port_step
    kafka = free_ports_at(
        [node * step + extra for node in range(cluster.kafka_brokers) for extra in (0, 1)]
    )
    if kafka is None:
        raise RuntimeError("found no free ports for the Kafka nodes below the ephemeral range")
    names = ("ranking_grpc", "deploy_grpc", "deploy_metrics", "explore_metrics")
    services = {name: free_port() for name in (*names, "streaming_metrics", "learner_metrics")}
    return ClusterPorts(
        kafka=kafka,
        flink_rest=free_port(),
        flink_rpc=free_port(),
        explore_grpc=consecutive_free_ports(replicas),
        explore_metrics=consecutive_free_ports(replicas),
        balancer_stats=free_port(),
        services=services,
    )
