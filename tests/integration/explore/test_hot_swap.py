"""Hot swap and traffic split in `feedrank serve` (two worker processes, one port).

The workers follow a plan file (``explore.plan_file``) over a temporary registry, so
these tests need no deploy service. Kafka carries only the catalogue, published to
private entity topics before ``serve`` replays them (decisions are not logged here; the
unit tests check that every decision carries its arm and version).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import pytest
from prometheus_client import CollectorRegistry, multiprocess
from prometheus_client.parser import text_string_to_metric_families

from feedrank.explore.serving_plan import ArmPlan, ServingPlan
from feedrank.explore.traffic_splitter import TrafficSplitter
from feedrank.features.store import InMemoryFeatureStore
from feedrank.registry import LocalModelRegistry
from feedrank.registry.bundle import TWO_TOWER_FILE
from feedrank.simulate.world.catalogue import catalogue_from_world
from feedrank.stack.kafka_broker import KafkaBroker
from feedrank.v1 import ranking_pb2, ranking_pb2_grpc
from tests.integration.explore.test_serve_cli import wait_serving
from tests.support.catalogue_topics import private_entity_topics, publish_world_to, topic_env
from tests.support.kafka import free_port
from tests.support.model_versions import all_posts, publish, small_bundle, small_world, writable

NUM_POSTS, NUM_USERS, WORKERS = 3_000, 500, 2
CLIENT_THREADS = 4
POLL_S = 0.05
SWAPS = 8
STEADY_WINDOW_S = 1.2


@dataclass
class SwapServer:
    address: str
    metrics_port: int
    plan_file: Path
    log_file: Path
    multiproc_dir: Path
    versions: list[str]  # good versions, oldest first
    corrupt: str  # a version whose two-tower file fails its checksum

    def set_plan(self, *arms: tuple[str, str, float], salt: str = "") -> None:
        plan = ServingPlan(tuple(ArmPlan(*arm) for arm in arms), salt)
        staging = self.plan_file.with_suffix(".tmp")
        staging.write_text(plan.to_json())
        staging.replace(self.plan_file)  # atomic: a worker never reads half a plan

    def samples(self, name: str) -> list[tuple[dict[str, str], float]]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics") as reply:
            text = reply.read().decode()
        return [
            (sample.labels, sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name
        ]

    def value(self, name: str, **labels: str) -> float:
        return sum(v for found, v in self.samples(name) if labels.items() <= found.items())

    def wait_for(self, condition: Callable[[], bool], timeout_s: float = 30.0) -> float:
        """Seconds until ``condition`` held (polled every ``POLL_S``)."""
        started = time.perf_counter()
        while not condition():
            assert time.perf_counter() - started < timeout_s, "condition not met in time"
            time.sleep(POLL_S)
        return time.perf_counter() - started

    def watch(self, seconds: float) -> None:
        """Scrape metrics as ``wait_for`` does, for ``seconds``: steady-state phases
        then carry the same measuring load as the phases that wait for swaps."""
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            self.value("feedrank_explore_served_versions")
            time.sleep(POLL_S)

    def workers_serving(self, arm: str, version: str) -> bool:
        served = "feedrank_explore_served_versions"
        return self.value(served, arm=arm, version=version) == WORKERS

    def stub(self) -> ranking_pb2_grpc.RankingStub:
        return ranking_pb2_grpc.RankingStub(grpc.insecure_channel(self.address))


@pytest.fixture(scope="module")
def swap_server(
    tmp_path_factory: pytest.TempPathFactory, kafka: KafkaBroker
) -> Iterator[SwapServer]:
    root = tmp_path_factory.mktemp("hot-swap")
    registry = LocalModelRegistry(root / "registry")
    world = small_world(NUM_POSTS, NUM_USERS, start_ms=int(time.time() * 1000))
    catalogue = private_entity_topics(kafka.bootstrap, "hot-swap")
    publish_world_to(kafka.bootstrap, catalogue, world)
    posts = all_posts(InMemoryFeatureStore(catalogue_from_world(world)), int(time.time() * 1000))
    versions = [publish(registry, small_bundle(posts, seed)) for seed in (1, 2, 3, 4)]
    corrupt = publish(registry, small_bundle(posts, seed=5))
    target = writable(registry.open_verified(corrupt) / TWO_TOWER_FILE)
    target.write_bytes(target.read_bytes()[:-16])  # truncated after publishing

    grpc_port, metrics_port = free_port(), free_port()
    state_dir = root / "state"
    env = {key: value for key, value in os.environ.items() if not key.startswith("FEEDRANK_")}
    env.update(
        FEEDRANK_KAFKA__BOOTSTRAP_SERVERS=kafka.bootstrap,
        FEEDRANK_PATHS__STATE_DIR=str(state_dir),
        FEEDRANK_PATHS__REGISTRY_DIR=str(registry.root),
        FEEDRANK_EXPLORE__PLAN_FILE=str(root / "plan.json"),
        FEEDRANK_EXPLORE__PLAN_POLL_INTERVAL_S="0.1",
        **topic_env(catalogue),
    )
    server = SwapServer(
        address=f"127.0.0.1:{grpc_port}",
        metrics_port=metrics_port,
        plan_file=root / "plan.json",
        log_file=root / "serve.log",
        multiproc_dir=state_dir / "prometheus" / "explore",
        versions=versions,
        corrupt=corrupt,
    )
    server.set_plan(("stable", versions[0], 1.0))
    command = [sys.executable, "-m", "feedrank.cli.main", "serve", "--no-log-decisions"]
    command += ["--workers", str(WORKERS), "--port", str(grpc_port)]
    command += ["--metrics-port", str(metrics_port)]
    with server.log_file.open("w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        try:
            wait_serving(server.address, process, timeout_s=120)  # type: ignore[arg-type]
        except AssertionError as failure:
            raise AssertionError(f"{failure}\n{server.log_file.read_text()}") from None
        server.wait_for(lambda: server.workers_serving("stable", versions[0]))
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Call:
    started: float
    latency_s: float
    code: grpc.StatusCode
    version: str = ""
    arm: str = ""


@dataclass
class RankLoad:
    """Client threads calling Rank back to back, each on its own channel (so calls
    spread over the workers), recording every call."""

    address: str
    threads: int = CLIENT_THREADS
    calls: list[Call] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> RankLoad:
        for index in range(self.threads):
            thread = threading.Thread(target=self._run, args=(index,), daemon=True)
            thread.start()
            self._workers.append(thread)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._workers:
            thread.join(30)

    def _run(self, index: int) -> None:
        stub = ranking_pb2_grpc.RankingStub(grpc.insecure_channel(self.address))
        rng = np.random.default_rng(index)
        while not self._stop.is_set():
            request = ranking_pb2.RankRequest(user_id=f"u{rng.integers(NUM_USERS)}", limit=20)
            started = time.perf_counter()
            try:
                response = stub.Rank(request, timeout=10)
            except grpc.RpcError as error:
                code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
                self.calls.append(Call(started, time.perf_counter() - started, code))
                continue
            latency = time.perf_counter() - started
            self.calls.append(
                Call(started, latency, grpc.StatusCode.OK, response.model_version, response.arm)
            )

    def between(self, start: float, end: float) -> list[Call]:
        return [call for call in list(self.calls) if start <= call.started < end]


def p99_ms(calls: list[Call]) -> float:
    return float(np.percentile([call.latency_s for call in calls], 99) * 1000)


def test_swaps_under_load_drop_nothing_and_keep_p99(swap_server: SwapServer) -> None:
    """Steady windows and swap windows alternate (ABAB…), so noise from whatever else
    runs on the machine lands in both samples alike."""
    server, versions = swap_server, swap_server.versions
    server.set_plan(("stable", versions[0], 1.0))
    server.wait_for(lambda: server.workers_serving("stable", versions[0]))
    steady: list[tuple[float, float]] = []  # windows (start, end)
    swapping: list[tuple[float, float]] = []
    swap_latencies: list[float] = []
    with RankLoad(server.address) as load:
        server.watch(1.0)  # warm-up: channels connected, caches warm
        for version in [*versions[1:], versions[0]] * (SWAPS // len(versions)):
            started = time.perf_counter()
            server.watch(STEADY_WINDOW_S)
            steady.append((started, time.perf_counter()))
            started = time.perf_counter()
            server.set_plan(("stable", version, 1.0))
            swap_latencies.append(
                server.wait_for(lambda v=version: server.workers_serving("stable", v))  # type: ignore[misc]
            )
            server.watch(0.3)  # the old version is freed just after the switch
            swapping.append((started, time.perf_counter()))
    during = [call for window in swapping for call in load.between(*window)]
    calm = [call for window in steady for call in load.between(*window)]
    failed = [call for call in load.calls if call.code != grpc.StatusCode.OK]
    load_s = server.value("feedrank_explore_model_load_seconds_sum") / max(
        server.value("feedrank_explore_model_load_seconds_count"), 1
    )
    print(
        f"\n{len(swap_latencies)} swaps; plan written -> both workers serve it: "
        f"median {np.median(swap_latencies) * 1000:.0f} ms, max {max(swap_latencies) * 1000:.0f}"
        f" ms; load+verify per worker (mean) {load_s * 1000:.0f} ms; "
        f"p99 steady {p99_ms(calm):.1f} ms ({len(calm)} calls), "
        f"p99 during swaps {p99_ms(during):.1f} ms ({len(during)} calls); "
        f"p50 {np.median([c.latency_s for c in calm]) * 1000:.1f} / "
        f"{np.median([c.latency_s for c in during]) * 1000:.1f} ms"
    )
    assert failed == []
    assert {call.version for call in during} >= set(versions)
    assert p99_ms(during) <= 1.5 * p99_ms(calm)


def test_a_corrupt_version_is_refused_and_the_old_one_keeps_serving(
    swap_server: SwapServer,
) -> None:
    server, stable = swap_server, swap_server.versions[0]
    server.set_plan(("stable", stable, 1.0))
    server.wait_for(lambda: server.workers_serving("stable", stable))
    refused_before = server.value("feedrank_explore_model_swaps_total", outcome="refused")

    server.set_plan(("stable", stable, 0.9), ("canary", server.corrupt, 0.1), salt="bad")
    server.wait_for(
        lambda: (
            server.value("feedrank_explore_model_swaps_total", outcome="refused")
            >= refused_before + WORKERS
        )
    )

    assert server.value("feedrank_explore_model_refused", version=server.corrupt) == 1
    stub = server.stub()
    responses = [
        stub.Rank(ranking_pb2.RankRequest(user_id=f"u{i}", limit=5), timeout=10) for i in range(60)
    ]
    assert {(r.arm, r.model_version) for r in responses} == {("stable", stable)}
    log = server.log_file.read_text()
    assert f"{server.corrupt} refused (registry)" in log
    assert "two_tower.safetensors fails its checksum" in log


def requests_per_worker(multiproc_dir: Path, scratch: Path) -> dict[str, float]:
    """OK Rank calls served by each worker process, from its own metrics file."""
    served = {}
    for path in multiproc_dir.glob("counter_*.db"):
        single = scratch / path.stem
        single.mkdir(parents=True)
        shutil.copy(path, single)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(single))  # type: ignore[no-untyped-call]
        served[path.stem] = sum(
            sample.value
            for family in registry.collect()
            for sample in family.samples
            if sample.name == "feedrank_rank_requests_total" and sample.labels["code"] == "OK"
        )
    return served


def test_arms_are_sticky_across_worker_processes(swap_server: SwapServer, tmp_path: Path) -> None:
    server, versions = swap_server, swap_server.versions
    server.set_plan(("stable", versions[0], 0.5), ("canary", versions[1], 0.5), salt="sticky")
    server.wait_for(
        lambda: (
            server.workers_serving("stable", versions[0])
            and server.workers_serving("canary", versions[1])
        )
    )
    before = requests_per_worker(server.multiproc_dir, tmp_path / "before")
    splitter = TrafficSplitter({"stable": 0.5, "canary": 0.5}, salt="sticky")
    users = [f"u{index}" for index in range(80)]
    seen: dict[str, set[tuple[str, str]]] = {user: set() for user in users}
    for _ in range(3):
        for user in users:  # a fresh connection per call: any worker may answer
            response = server.stub().Rank(ranking_pb2.RankRequest(user_id=user), timeout=10)
            seen[user].add((response.arm, response.model_version))
    after = requests_per_worker(server.multiproc_dir, tmp_path / "after")

    expected = {"stable": versions[0], "canary": versions[1]}
    for user in users:
        arm = splitter.arm_of(user)
        assert seen[user] == {(arm, expected[arm])}, user
    assert {splitter.arm_of(user) for user in users} == {"stable", "canary"}
    busy = [name for name in after if after[name] - before.get(name, 0.0) > 0]
    assert len(busy) == WORKERS  # both processes answered, and agreed
