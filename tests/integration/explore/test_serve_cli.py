"""`feedrank serve` as deployed: several worker processes on one port, metrics aggregated."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from feedrank.core import codecs
from feedrank.stack.components import StackError, ensure_port_free
from feedrank.stack.kafka_broker import KafkaBroker
from feedrank.v1 import ranking_pb2, ranking_pb2_grpc
from tests.support.catalogue_topics import private_entity_topics, publish_world_to, topic_env
from tests.support.kafka import CommittedReader, TopicFactory, free_port
from tests.support.model_versions import small_world

CALLS = 40


def wait_serving(address: str, process: subprocess.Popen[str], timeout_s: float) -> None:
    stub: Any = health_pb2_grpc.HealthStub(grpc.insecure_channel(address))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else "(see its log)"
            raise AssertionError(f"feedrank serve exited during start-up:\n{output}")
        try:
            status = stub.Check(
                health_pb2.HealthCheckRequest(service="feedrank.v1.Ranking"), timeout=1
            )
            if status.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"not SERVING within {timeout_s}s")


def scrape(metrics_port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
        return str(reply.read().decode())


def metric_total(exposition: str, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in exposition.splitlines() if line.startswith(name)
    )


def test_serve_runs_workers_on_one_port_and_stops_cleanly(
    kafka: KafkaBroker, new_topic: TopicFactory, consume: CommittedReader, tmp_path: Path
) -> None:
    topic = new_topic("decisions", partitions=3)
    catalogue = private_entity_topics(kafka.bootstrap, "serve-cli")
    publish_world_to(kafka.bootstrap, catalogue, small_world(5_000, 500, int(time.time() * 1000)))
    grpc_port, metrics_port = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("FEEDRANK_")}
    env.update(
        FEEDRANK_KAFKA__BOOTSTRAP_SERVERS=kafka.bootstrap,
        FEEDRANK_TOPICS__DECISIONS=topic,
        FEEDRANK_PATHS__STATE_DIR=str(tmp_path / "state"),
        **topic_env(catalogue),
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "feedrank.cli.main",
            "serve",
            "--workers",
            "2",
            "--port",
            str(grpc_port),
            "--metrics-port",
            str(metrics_port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    address = f"127.0.0.1:{grpc_port}"
    try:
        wait_serving(address, process, timeout_s=120)
        for index in range(CALLS):  # a fresh channel each time spreads calls over workers
            stub = ranking_pb2_grpc.RankingStub(grpc.insecure_channel(address))
            response = stub.Rank(ranking_pb2.RankRequest(user_id=f"u{index}", limit=10), timeout=10)
            assert len(response.items) == 10
        exposition = scrape(metrics_port)
        ok_calls = 'feedrank_rank_requests_total{arm="stable",code="OK"}'
        assert metric_total(exposition, ok_calls) == CALLS
        assert metric_total(exposition, "feedrank_rank_latency_seconds_count") == CALLS
        assert 'feedrank_rank_stage_latency_seconds_bucket{le="0.005",stage="retrieve"}' in (
            exposition
        )
        lint = subprocess.run(
            ["promtool", "check", "metrics"],
            input=exposition,
            capture_output=True,
            text=True,
            check=False,
        )
        assert lint.returncode == 0, lint.stdout + lint.stderr
        records = consume(topic, CALLS, timeout_s=60)
        assert {codecs.decode_decision(r.value()).user_id for r in records} == {
            f"u{index}" for index in range(CALLS)
        }
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, output
    assert "explore service stopped" in output
    assert no_listener_on(grpc_port), f"a worker still listens on {grpc_port}:\n{output}"


def no_listener_on(port: int, timeout_s: float = 10.0) -> bool:
    """True once nothing listens on ``port`` (the stack's own probe: a bind with
    SO_REUSEADDR gets past the connections the server closed, in TIME_WAIT, which made a
    plain bind fail now and then, but not past a worker's open listening socket)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            ensure_port_free(port, owner="this test's probe")
        except StackError:
            if time.monotonic() >= deadline:
                return False
        else:
            return True
        time.sleep(0.2)
