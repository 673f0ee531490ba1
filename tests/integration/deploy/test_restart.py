"""`feedrank deploy` as a process: killed mid-rollout, it comes back in the same state."""

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

from feedrank.core.settings import load_settings
from feedrank.deploy.access import operator_token
from feedrank.registry import LocalModelRegistry
from feedrank.v1 import deploy_pb2, deploy_pb2_grpc
from tests.support.deploy import publish_versions
from tests.support.kafka import free_port


def launch(state_dir: Path, port: int, metrics_port: int) -> subprocess.Popen[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("FEEDRANK_")}
    env["FEEDRANK_PATHS__STATE_DIR"] = str(state_dir)
    command = [sys.executable, "-m", "feedrank.cli.main", "deploy", "--no-analysis"]
    command += ["--port", str(port), "--metrics-port", str(metrics_port)]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def wait_serving(address: str, process: subprocess.Popen[str], timeout_s: float = 90) -> None:
    stub: Any = health_pb2_grpc.HealthStub(grpc.insecure_channel(address))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"feedrank deploy exited: {process.stdout and process.stdout.read()}"
            )
        try:
            reply = stub.Check(
                health_pb2.HealthCheckRequest(service="feedrank.v1.Deploy"), timeout=1
            )
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"not SERVING within {timeout_s}s")


def canary_weight_metric(metrics_port: int) -> float:
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith("feedrank_deploy_canary_weight "):
                return float(line.split()[1])
    raise AssertionError("feedrank_deploy_canary_weight not exported")


def test_restart_mid_rollout_resumes_the_same_state(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    first, second = publish_versions(LocalModelRegistry(state_dir / "registry"), 2)
    port, metrics_port = free_port(), free_port()
    address = f"127.0.0.1:{port}"
    process = launch(state_dir, port, metrics_port)
    try:
        wait_serving(address, process)
        stub = deploy_pb2_grpc.DeployStub(grpc.insecure_channel(address))
        # The token the service wrote on its first start; it keeps it across restarts.
        token = operator_token(load_settings(paths={"state_dir": state_dir}))
        operator = (("authorization", f"Bearer {token}"),)
        stub.StartRollout(
            deploy_pb2.StartRolloutRequest(version=first), timeout=5, metadata=operator
        )
        stub.StartRollout(
            deploy_pb2.StartRolloutRequest(version=second), timeout=5, metadata=operator
        )
        stub.PromoteRollout(deploy_pb2.PromoteRolloutRequest(), timeout=5, metadata=operator)
        stub.PauseRollout(deploy_pb2.PauseRolloutRequest(), timeout=5, metadata=operator)
        before = stub.GetRollout(deploy_pb2.GetRolloutRequest(), timeout=5)
        history = stub.RolloutHistory(deploy_pb2.RolloutHistoryRequest(), timeout=5)
        plan = stub.GetServingPlan(deploy_pb2.GetServingPlanRequest(), timeout=5)
        assert before.phase == deploy_pb2.ROLLOUT_PHASE_PAUSED
        assert before.canary_weight == 0.05
        assert canary_weight_metric(metrics_port) == 0.05
    finally:
        process.send_signal(signal.SIGKILL)  # no chance to tidy up
        process.wait(timeout=10)

    process = launch(state_dir, port, metrics_port)
    try:
        wait_serving(address, process)
        stub = deploy_pb2_grpc.DeployStub(grpc.insecure_channel(address))
        after = stub.GetRollout(deploy_pb2.GetRolloutRequest(), timeout=5)
        after.analysis = before.analysis = ""  # in-memory only
        assert after == before
        assert stub.RolloutHistory(deploy_pb2.RolloutHistoryRequest(), timeout=5) == history
        assert stub.GetServingPlan(deploy_pb2.GetServingPlanRequest(), timeout=5) == plan
        assert canary_weight_metric(metrics_port) == 0.05
        resumed = stub.ResumeRollout(
            deploy_pb2.ResumeRolloutRequest(), timeout=5, metadata=operator
        )
        assert resumed.phase == deploy_pb2.ROLLOUT_PHASE_PROGRESSING
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
