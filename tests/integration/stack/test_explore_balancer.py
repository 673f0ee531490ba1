"""Explore replicas behind HAProxy: Rank through the balancer reaches every replica, and a
replica SIGKILLed under a steady stream of Rank calls costs no call, is marked DOWN and
comes back UP once restarted.

Two real ``feedrank serve`` processes (one worker each, a 5,000-post world replayed from
private topics) and a real HAProxy, all on free ports, started through the stack's own
components (``explore_cluster_components``)."""

from __future__ import annotations

import os
import signal
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from confluent_kafka.admin import AdminClient

from feedrank.client import RankingClient
from feedrank.client.errors import FeedrankError
from feedrank.core.settings import Settings, load_settings
from feedrank.stack.balancer import BACKEND, BalancerComponent
from feedrank.stack.explore_replicas import ExploreReplicaComponent, explore_cluster_components
from feedrank.stack.kafka_broker import KafkaBroker
from feedrank.stack.process import ManagedProcess
from tests.support.catalogue_topics import private_entity_topics, publish_world_to
from tests.support.kafka import TopicFactory, consecutive_free_ports, free_port
from tests.support.model_versions import small_world

REPLICAS = 2
LOAD_THREADS = 4
CALL_TIMEOUT_S = 10.0  # generous: two replicas, Kafka and the load share two busy cores
STATE_CHANGE_TIMEOUT_S = 10.0  # HAProxy checks every second; DOWN after 2 failures


@dataclass
class ExploreCluster:
    replicas: list[ExploreReplicaComponent]
    balancer: BalancerComponent
    processes: dict[str, ManagedProcess] = field(default_factory=dict)

    def ok_calls(self, replica: ExploreReplicaComponent) -> float:
        """Rank calls ``replica``'s running process answered OK (from its /metrics)."""
        url = f"http://127.0.0.1:{replica.metrics_port()}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            exposition = reply.read().decode()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in exposition.splitlines()
            if line.startswith("feedrank_rank_requests_total{") and 'code="OK"' in line
        )

    def balancer_counters(self) -> dict[str, float]:
        """The explore backend's retry and error counters, from HAProxy's /metrics."""
        url = self.balancer.stats_url.removesuffix("/stats") + "/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            exposition = reply.read().decode()
        wanted = ("retry", "redispatch", "connection_errors", "response_errors")
        suffix = f'_total{{proxy="{BACKEND}"}}'
        counters = {}
        for line in exposition.splitlines():
            name, _, value = line.rpartition(" ")
            if name.startswith("haproxy_backend_") and name.endswith(suffix):
                short = name.removeprefix("haproxy_backend_").removesuffix(suffix)
                if any(part in short for part in wanted):
                    counters[short] = float(value)
        return counters

    def state_of(self, replica: ExploreReplicaComponent) -> str:
        return self.balancer.replica_states()[replica.name]


@pytest.fixture(scope="module")
def cluster_settings(
    kafka: KafkaBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    catalogue = private_entity_topics(kafka.bootstrap, "balancer")
    publish_world_to(kafka.bootstrap, catalogue, small_world(5_000, 500, int(time.time() * 1000)))
    decisions = TopicFactory(AdminClient({"bootstrap.servers": kafka.bootstrap}), "balancer")
    yield load_settings(
        kafka={"bootstrap_servers": kafka.bootstrap},
        topics={
            "decisions": decisions("decisions", partitions=3),
            "posts": catalogue.posts,
            "users": catalogue.users,
            "graph": catalogue.graph,
        },
        paths={"state_dir": tmp_path_factory.mktemp("explore-cluster") / "state"},
        ports={"ranking_grpc": free_port()},
        explore={"workers": 1},
        cluster={
            "explore_replicas": REPLICAS,
            "explore_first_grpc_port": consecutive_free_ports(REPLICAS),
            "explore_first_metrics_port": consecutive_free_ports(REPLICAS),
            "balancer_stats_port": free_port(),
        },
    )
    decisions.delete_all()


# One cluster for the module (its start took 35-41 s per test): the first test counts
# the calls it makes itself, and the second leaves every replica serving again.
@pytest.fixture(scope="module")
def explore_cluster(cluster_settings: Settings) -> Iterator[ExploreCluster]:
    components = explore_cluster_components(cluster_settings)
    assert [component.name for component in components] == ["explore-1", "explore-2", "balancer"]
    replicas = [c for c in components if isinstance(c, ExploreReplicaComponent)]
    balancer = next(c for c in components if isinstance(c, BalancerComponent))
    cluster = ExploreCluster(replicas, balancer)
    try:
        for replica in replicas:  # both start at once; each then waits for its health
            cluster.processes[replica.name] = replica.start(tie_to_parent=True)
        for replica in replicas:
            replica.wait_ready(cluster.processes[replica.name])
        cluster.processes[balancer.name] = balancer.start(tie_to_parent=True)
        balancer.wait_ready(cluster.processes[balancer.name])
        yield cluster
    finally:
        for process in reversed(cluster.processes.values()):
            process.stop(grace_s=20)


@dataclass
class RankLoad:
    """Threads calling Rank through the balancer until stopped, counting every outcome."""

    address: str
    threads: int
    ok: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> RankLoad:
        for index in range(self.threads):
            worker = threading.Thread(target=self._call_until_stopped, args=(index,), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=CALL_TIMEOUT_S + 5)

    def _call_until_stopped(self, thread: int) -> None:
        with RankingClient(self.address, timeout_s=CALL_TIMEOUT_S) as client:
            calls = 0
            while not self._stop.is_set():
                calls += 1
                try:
                    client.rank(f"u{(thread * 1000 + calls) % 500}", limit=10)
                except FeedrankError as error:
                    with self._lock:
                        self.failures[f"{type(error).__name__}: {error}"] += 1
                else:
                    with self._lock:
                        self.ok += 1

    def failed(self) -> int:
        with self._lock:
            return sum(self.failures.values())


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Seconds until ``condition`` held (polled every 50 ms); fails after ``timeout_s``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if condition():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout_s}s")


def test_rank_through_the_balancer_reaches_every_replica(
    explore_cluster: ExploreCluster,
) -> None:
    before = [explore_cluster.ok_calls(replica) for replica in explore_cluster.replicas]
    with RankingClient(explore_cluster.balancer.endpoint, timeout_s=CALL_TIMEOUT_S) as client:
        for index in range(40):  # one channel: HAProxy balances calls, not connections
            assert len(client.rank(f"u{index}", limit=10).items) == 10
    served = [
        explore_cluster.ok_calls(replica) - earlier
        for replica, earlier in zip(explore_cluster.replicas, before, strict=True)
    ]
    assert sum(served) == 40
    assert all(calls > 0 for calls in served), served
    assert explore_cluster.balancer.probe().state == "healthy"


def test_a_replica_killed_under_load_costs_no_call_and_comes_back(
    explore_cluster: ExploreCluster,
) -> None:
    balancer = explore_cluster.balancer
    victim = explore_cluster.replicas[-1]
    with RankLoad(balancer.endpoint, LOAD_THREADS) as load:
        wait_for(lambda: load.ok >= 100, 60, "100 Rank calls under load")
        os.killpg(explore_cluster.processes[victim.name].pid, signal.SIGKILL)
        killed_at, ok_at_kill = time.monotonic(), load.ok
        to_down = wait_for(
            lambda: explore_cluster.state_of(victim).startswith("DOWN"),
            STATE_CHANGE_TIMEOUT_S,
            f"HAProxy marking {victim.name} DOWN",
        )
        explore_cluster.processes[victim.name].stop()  # reap the killed process
        wait_for(lambda: load.ok >= ok_at_kill + 100, 60, "100 calls with one replica")

        process = victim.start(tie_to_parent=True)
        explore_cluster.processes[victim.name] = process
        victim.wait_ready(process)
        to_up = wait_for(
            lambda: explore_cluster.state_of(victim) == "UP",
            STATE_CHANGE_TIMEOUT_S,
            f"HAProxy marking {victim.name} UP again",
        )
        wait_for(lambda: explore_cluster.ok_calls(victim) > 0, 30, f"{victim.name} serving again")
        downtime = time.monotonic() - killed_at
    print(
        f"\n{load.ok} Rank calls OK, {load.failed()} failed {dict(load.failures)}; "
        f"{victim.name} DOWN {to_down:.2f}s after SIGKILL, UP {to_up:.2f}s after SERVING "
        f"again; {downtime:.0f}s from kill to serving again; HAProxy's explore backend: "
        f"{explore_cluster.balancer_counters()}"
    )
    assert load.failed() == 0, dict(load.failures)
    assert balancer.probe().state == "healthy"
