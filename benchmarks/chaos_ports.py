"""Free ports for the chaos run's cluster topology, so it never meets a running stack.

Kafka node i listens on ``kafka + i*step`` (clients) and one above (controllers), so
the Kafka base is chosen with all of those free; the explore replicas take two
consecutive ports each for Rank and metrics. Every port lies below the ephemeral range,
so a restarted component always finds its port free again.
"""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass

from feedrank.core.settings.topology import ClusterSettings

# Below Linux's ephemeral range (32768 and up by default): a port a client connection
# borrowed there could stop a killed broker from binding its own port again.
LOW, HIGH = 20_000, 32_000


@dataclass(frozen=True)
class ClusterPorts:
    kafka: int
    flink_rest: int
    flink_rpc: int
    explore_grpc: int
    explore_metrics: int
    balancer_stats: int
    services: dict[str, int]  # the [ports] group: balancer front, deploy, metrics


def is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_block(offsets: list[int], taken: set[int], rng: random.Random) -> int:
    """A base port whose ``base + offset`` are all free and not taken yet."""
    for _ in range(1000):
        base = rng.randrange(LOW, HIGH)
        ports = [base + offset for offset in offsets]
        if not taken.intersection(ports) and all(is_free(port) for port in ports):
            taken.update(ports)
            return base
    raise RuntimeError(f"no free ports at offsets {offsets} between {LOW} and {HIGH}")


def cluster_ports(replicas: int = 2) -> ClusterPorts:
    cluster = ClusterSettings()
    rng, taken = random.Random(), set[int]()
    step = cluster.kafka_port_step
    kafka = free_block(
        [i * step + extra for i in range(cluster.kafka_brokers) for extra in (0, 1)], taken, rng
    )

    def single() -> int:
        return free_block([0], taken, rng)

    names = ("ranking_grpc", "deploy_grpc", "deploy_metrics", "explore_metrics")
    services = {name: single() for name in (*names, "streaming_metrics", "learner_metrics")}
    return ClusterPorts(
        kafka=kafka,
        flink_rest=single(),
        flink_rpc=single(),
        explore_grpc=free_block(list(range(replicas)), taken, rng),
        explore_metrics=free_block(list(range(replicas)), taken, rng),
        balancer_stats=single(),
        services=services,
    )
