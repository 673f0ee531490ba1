"""A component of the local stack that dies is restarted and counted, in the foreground
(`feedrank up`): its output says so. The detached stack's supervisor (`up --detach`)
restarts each of six components in the chaos test (``tests/integration/chaos``), and
`test_stack_cli` checks that `down` stops it with everything else."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from feedrank.stack.jars import JarLocations
from tests.integration.cli.test_stack_cli import (
    FEEDRANK,
    FOREGROUND_READY_S,
    OutputWatcher,
    feedrank,
    pid_alive,
    small_stack_env,
    status_json,
)

RESTART_S = 240.0  # the backoff, a Python start and the component's own start-up, loaded


@pytest.fixture(scope="module")
def shared_env(
    tmp_path_factory: pytest.TempPathFactory, jars: JarLocations
) -> Iterator[dict[str, str]]:
    env = small_stack_env(tmp_path_factory.mktemp("restarts"))
    yield env
    feedrank(env, "down")  # whatever a failed test left behind


def component(statuses: list[dict[str, object]], name: str) -> dict[str, object]:
    (found,) = [status for status in statuses if status["name"] == name]
    return found


def wait_for_restart(env: dict[str, str], name: str, killed_pid: int) -> dict[str, object]:
    """Poll `feedrank status --json` until ``name`` runs again, healthy, counted once."""
    deadline = time.monotonic() + RESTART_S
    seen: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        seen = status_json(env)[1]
        now = component(seen, name)
        if now["state"] == "healthy" and now["pid"] != killed_pid and now["restarts"] == 1:
            return now
        time.sleep(1.0)
    raise AssertionError(f"{name} not restarted within {RESTART_S:.0f}s: {seen}")


def test_a_foreground_stack_restarts_a_killed_component(shared_env: dict[str, str]) -> None:
    process = subprocess.Popen(
        [*FEEDRANK, "up", "--no-demo"],
        env={**shared_env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    watcher = OutputWatcher(process, "stack is up")
    try:
        watcher.seen.wait(timeout=FOREGROUND_READY_S)
        assert process.poll() is None, f"`feedrank up` exited early:\n{watcher.output(10)}"
        code, statuses = status_json(shared_env)
        assert code == 0, f"not healthy: {statuses}\n{watcher.output()}"
        deploy = component(statuses, "deploy")
        assert isinstance(deploy["pid"], int)
        os.kill(deploy["pid"], signal.SIGKILL)
        restarted = wait_for_restart(shared_env, "deploy", deploy["pid"])
        process.send_signal(signal.SIGINT)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    output = watcher.output(timeout=10)
    assert process.returncode == 0, output
    assert "deploy killed by SIGKILL after" in output, output
    assert "restarted deploy" in output, output
    pids = [status["pid"] for status in statuses] + [restarted["pid"]]
    assert not any(pid_alive(pid) for pid in pids if isinstance(pid, int))
