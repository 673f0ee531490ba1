"""`feedrank up` as a user runs it: in the foreground with the demo (a component that
dies is restarted and counted, Ctrl-C stops everything), and `up --detach` / `status` /
`down`, leaving nothing behind. The detached stack's supervisor restarts components in
the chaos test (``tests/integration/chaos``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from feedrank.stack.jars import JarLocations
from tests.support.kafka import free_port

FEEDRANK = [sys.executable, "-m", "feedrank.cli.main"]
STACK = ["kafka", "deploy", "explore", "join", "learner"]
# The detached test's stack: `up --detach`, `status` and `down` are the same for every
# component, and the foreground test starts them all (cluster.only: 82 s to 44 s).
DETACHED = ["kafka", "deploy"]
# Bootstrap training plus the start of every component, on a loaded 2-core CI box.
FOREGROUND_READY_S = 420.0
RESTART_S = 240.0  # the backoff, a Python start and the component's own start-up, loaded
STOP_S = 120.0  # the demo's report, then every component stopped (the join's savepoint)


@pytest.fixture
def stack_env(tmp_path: Path, jars: JarLocations) -> dict[str, str]:
    return small_stack_env(tmp_path / "state")


def small_stack_env(state_dir: Path) -> dict[str, str]:
    """This process's environment without its FEEDRANK_ variables, plus a small stack's:
    ``state_dir``, free ports for every component, a small world, one explore worker."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("FEEDRANK_")}
    env.update(
        FEEDRANK_PATHS__STATE_DIR=str(state_dir),
        FEEDRANK_KAFKA__BROKER_PORT=str(free_port()),
        FEEDRANK_KAFKA__CONTROLLER_PORT=str(free_port()),
        FEEDRANK_PORTS__RANKING_GRPC=str(free_port()),
        FEEDRANK_PORTS__EXPLORE_METRICS=str(free_port()),
        FEEDRANK_PORTS__DEPLOY_GRPC=str(free_port()),
        FEEDRANK_PORTS__DEPLOY_METRICS=str(free_port()),
        FEEDRANK_PORTS__STREAMING_METRICS=str(free_port()),
        FEEDRANK_PORTS__LEARNER_METRICS=str(free_port()),
        FEEDRANK_WORLD__NUM_POSTS="20000",
        FEEDRANK_WORLD__NUM_USERS="2000",
        FEEDRANK_EXPLORE__WORKERS="1",
    )
    return env


def feedrank(env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FEEDRANK, *arguments], env=env, capture_output=True, text=True, timeout=180, check=False
    )


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def status_json(env: dict[str, str]) -> tuple[int, list[dict[str, object]]]:
    result = feedrank(env, "status", "--json")
    return result.returncode, json.loads(result.stdout)


def test_up_detach_status_down_leaves_no_process(stack_env: dict[str, str]) -> None:
    stack_env = {**stack_env, "FEEDRANK_CLUSTER__ONLY": json.dumps(DETACHED)}
    up = feedrank(stack_env, "up", "--detach")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "supervised by pid" in up.stdout
    supervisor = supervisor_pid(stack_env)
    assert pid_alive(supervisor)

    code, statuses = status_json(stack_env)
    assert code == 0
    assert [status["name"] for status in statuses] == DETACHED
    assert all(status["state"] == "healthy" for status in statuses)
    assert all(status["restarts"] == 0 for status in statuses)
    pids = [status["pid"] for status in statuses]
    assert all(isinstance(pid, int) and pid_alive(pid) for pid in pids)
    table = feedrank(stack_env, "status")
    assert table.returncode == 0, table.stdout
    assert "restarts" in table.stdout
    assert "supervised by pid" in table.stdout

    again = feedrank(stack_env, "up", "--detach")  # idempotent: nothing new started
    assert again.returncode == 0
    assert [status["pid"] for status in status_json(stack_env)[1]] == pids

    down = feedrank(stack_env, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert f"stopped: {', '.join(reversed(DETACHED))}" in down.stdout
    assert not any(pid_alive(pid) for pid in [*pids, supervisor] if isinstance(pid, int))
    code, statuses = status_json(stack_env)
    assert code == 1
    assert {status["state"] for status in statuses} == {"stopped"}


def supervisor_pid(env: dict[str, str]) -> int:
    """The detached stack's supervisor, from its pid file."""
    pid_file = Path(env["FEEDRANK_PATHS__STATE_DIR"]) / "run" / "supervisor.pid"
    return int(json.loads(pid_file.read_text())["pid"])


class OutputWatcher:
    """Reads a process's output on a thread, keeps all of it, and signals a line."""

    def __init__(self, process: subprocess.Popen[str], marker: str) -> None:
        self.lines: list[str] = []
        self.seen = threading.Event()
        self._marker = marker
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line)
            if self._marker in line:
                self.seen.set()
        self.seen.set()  # the process closed its output: nothing more will come

    def output(self, timeout: float = 0.0) -> str:
        self._thread.join(timeout)
        return "".join(self.lines)


def test_foreground_up_runs_the_demo_restarts_a_killed_component_and_stops_on_ctrl_c(
    stack_env: dict[str, str],
) -> None:
    process = subprocess.Popen(
        [*FEEDRANK, "up"],
        env={**stack_env, "PYTHONUNBUFFERED": "1"},  # each line as it is printed
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # `up` first trains the bootstrap model, then starts the stack and prints this line
    # once every component is healthy: wait on that, not on a guessed deadline.
    watcher = OutputWatcher(process, "stack is up")
    try:
        up_in_time = watcher.seen.wait(timeout=FOREGROUND_READY_S)
        assert process.poll() is None, f"`feedrank up` exited early:\n{watcher.output(10)}"
        assert up_in_time, (
            f"the stack was not up within {FOREGROUND_READY_S:.0f}s; `feedrank up` said:\n"
            f"{watcher.output()}"
        )
        code, statuses = status_json(stack_env)
        assert code == 0, f"stack not healthy: {statuses}\n`feedrank up` said:\n{watcher.output()}"
        # A component that dies is restarted and counted while the demo runs.
        deploy = component(statuses, "deploy")
        assert isinstance(deploy["pid"], int)
        os.kill(deploy["pid"], signal.SIGKILL)
        restarted = wait_for_restart(stack_env, "deploy", deploy["pid"], watcher)
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STOP_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"`feedrank up` still ran {STOP_S:.0f}s after Ctrl-C; it said:\n{watcher.output()}"
            ) from None
    finally:
        if process.poll() is None:
            process.kill()
    output = watcher.output(timeout=10)
    assert process.returncode == 0, output
    assert "stack stopped" in output
    assert "deploy killed by SIGKILL after" in output, output
    assert "restarted deploy" in output, output
    assert "engagement over the whole run" in output, output  # the demo ran and reported
    assert (Path(stack_env["FEEDRANK_PATHS__STATE_DIR"]) / "demo" / "engagement.png").is_file()
    pids = [status["pid"] for status in statuses] + [restarted["pid"]]
    assert not any(pid_alive(pid) for pid in pids if isinstance(pid, int))


def component(statuses: list[dict[str, object]], name: str) -> dict[str, object]:
    (found,) = [status for status in statuses if status["name"] == name]
    return found


def wait_for_restart(
    env: dict[str, str], name: str, killed_pid: int, watcher: OutputWatcher
) -> dict[str, object]:
    """Poll `feedrank status --json` until ``name`` runs again, healthy, counted once."""
    deadline = time.monotonic() + RESTART_S
    seen: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        seen = status_json(env)[1]
        now = component(seen, name)
        if now["state"] == "healthy" and now["pid"] != killed_pid and now["restarts"] == 1:
            return now
        time.sleep(1.0)
    raise AssertionError(
        f"{name} not restarted within {RESTART_S:.0f}s: {seen}\n`feedrank up` said:\n"
        f"{watcher.output()}"
    )
