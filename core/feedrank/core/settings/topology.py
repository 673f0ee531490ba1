"""The cluster topology of the local stack (``feedrank up --topology cluster``).

The single-node stack (one broker, the join on PyFlink's mini-cluster, one explore host)
is the default. The cluster topology runs, on one machine, the shape a production
deployment has: a Kafka cluster, a Flink standalone session cluster running the join,
and explore replicas behind a gRPC-aware load balancer. Its ports are chosen here so
that every piece stays on 127.0.0.1 next to the single-node defaults.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from feedrank.core.settings.group import SettingsGroup

Topology = Literal["single", "cluster"]


class ClusterSettings(SettingsGroup):
    """How many of each piece the cluster topology runs, and where."""

    topology: Topology = Field(
        default="single",
        description="'single': one broker, the mini-cluster, one explore host. 'cluster': "
        "a Kafka cluster, a Flink session cluster and explore replicas behind a balancer.",
    )
    only: list[str] = Field(
        default=[],
        description="Start only the components with these names (or name prefixes: "
        "'kafka' is every broker of the cluster), in their usual order, e.g. "
        '["kafka"] for a broker alone while developing; empty: all of them. `status`, '
        "`down` and the supervisor see the same ones.",
    )
    kafka_brokers: int = Field(
        default=3, ge=1, description="KRaft nodes (each broker and controller)."
    )
    kafka_port_step: int = Field(
        default=100,
        ge=2,
        description="Node i listens on kafka.broker_port + i*step (clients) and "
        "kafka.controller_port + i*step (controllers): 9092, 9192, 9292 by default.",
    )
    min_insync_replicas: int = Field(
        default=2, ge=1, description="min.insync.replicas of the feedrank and internal topics."
    )
    flink_rest_port: int = Field(
        default=8081, ge=1, le=65535, description="The JobManager's REST API and web UI."
    )
    flink_rpc_port: int = Field(
        default=6123, ge=1, le=65535, description="The JobManager's RPC port."
    )
    flink_taskmanagers: int = Field(default=2, ge=1, description="TaskManager processes.")
    flink_slots_per_taskmanager: int = Field(
        default=1, ge=1, description="Task slots in each TaskManager."
    )
    flink_process_memory_mb: int = Field(
        default=1600, ge=512, description="Total process memory of each Flink JVM (MiB)."
    )
    explore_replicas: int = Field(default=2, ge=1, description="Explore server processes.")
    explore_first_grpc_port: int = Field(
        default=50061,
        ge=1,
        le=65535,
        description="Replica i serves Rank on this port + i; the balancer owns ports.ranking_grpc.",
    )
    explore_first_metrics_port: int = Field(
        default=9111, ge=1, le=65535, description="Replica i exports /metrics on this port + i."
    )
    balancer_stats_port: int = Field(
        default=8404, ge=1, le=65535, description="HAProxy's stats page and Prometheus metrics."
    )

    def kafka_node_port(self, first_port: int, node_id: int) -> int:
        """Where KRaft node ``node_id`` (1, 2, …) listens, given node 1's port (the client
        port kafka.broker_port or the controller port kafka.controller_port)."""
        return first_port + (node_id - 1) * self.kafka_port_step
