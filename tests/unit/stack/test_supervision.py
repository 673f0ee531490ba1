"""The stack's supervisor restarts what dies (with backoff, counted), gives up on what
crashes at start-up, and never restarts what ``down`` stopped. Real child processes,
small stand-in components (a sleeper, a crasher) and a fast restart policy."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from feedrank.core.settings import Settings, load_settings
from feedrank.stack.components import Health
from feedrank.stack.process import ManagedProcess
from feedrank.stack.restarts import RestartPolicy
from feedrank.stack.supervisor import LocalStack, replica_groups
from feedrank.stack.topology import stack_components, with_topology

FAST = RestartPolicy(
    first_delay_s=0.1, max_delay_s=0.4, quick_crash_s=2.0, give_up_after=3, poll_s=0.05
)


class ScriptComponent:
    """A component whose process runs a line of Python (tagged, so pid files find it)."""

    def __init__(self, name: str, code: str, log_dir: Path) -> None:
        self.name = name
        self.code = code
        self.log_dir = log_dir
        self.starts = 0

    @property
    def tag(self) -> str:
        return f"feedrank-test-{self.name}-{os.getpid()}"

    @property
    def endpoint(self) -> str:
        return "-"

    def start(self, *, tie_to_parent: bool) -> ManagedProcess:
        self.starts += 1
        return ManagedProcess.launch(
            [sys.executable, "-c", self.code, self.tag],
            log_file=self.log_dir / f"{self.name}.log",
            tie_to_parent=tie_to_parent,
            tag=self.tag,
        )

    def wait_ready(self, process: ManagedProcess) -> None:
        assert wait_until(process.is_running)

    def probe(self) -> Health:
        return Health("healthy", "sleeping")


def wait_until(condition: Callable[[], object], timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(paths={"state_dir": tmp_path})


@pytest.fixture
def stack(settings: Settings) -> Iterator[LocalStack]:
    log_dir = settings.paths.log_dir
    components = [
        ScriptComponent("sleeper", "import time; time.sleep(300)", log_dir),
        ScriptComponent("other", "import time; time.sleep(300)", log_dir),
    ]
    stack = LocalStack(settings, components, policy=FAST)  # type: ignore[arg-type]
    yield stack
    stack.down()


class Supervising:
    """``stack.supervise`` on a thread, as the foreground ``up`` runs it."""

    def __init__(self, stack: LocalStack) -> None:
        self.events: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=stack.supervise,
            args=(self.stop,),
            kwargs={"tie_to_parent": True, "on_event": self.events.append},
        )

    def __enter__(self) -> Supervising:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def state_of(stack: LocalStack, name: str) -> tuple[str, int | None, int, str]:
    (found,) = [item for item in stack.status() if item.name == name]
    return found.state, found.pid, found.restarts, found.detail


def test_a_killed_component_is_restarted_and_counted(stack: LocalStack) -> None:
    stack.up(detach=False)
    first_pid = state_of(stack, "sleeper")[1]
    assert first_pid is not None
    other_pid = state_of(stack, "other")[1]
    with Supervising(stack) as supervising:
        assert wait_until(lambda: stack.supervisor_pid() == os.getpid())
        os.kill(first_pid, signal.SIGKILL)
        assert wait_until(lambda: state_of(stack, "sleeper")[2] == 1)
        state, pid, restarts, _ = state_of(stack, "sleeper")
        assert (state, restarts) == ("healthy", 1)
        assert pid not in (None, first_pid)
        assert state_of(stack, "other")[1:3] == (other_pid, 0)  # left alone
    assert any("sleeper killed by SIGKILL" in event for event in supervising.events)
    assert any("restarted sleeper" in event for event in supervising.events)


def test_a_component_crashing_at_start_up_is_given_up_on(
    stack: LocalStack, settings: Settings
) -> None:
    crasher = ScriptComponent(
        "crasher",
        "import pathlib, sys, time\n"
        f"marker = pathlib.Path({str(settings.paths.state_dir / 'started')!r})\n"
        "if marker.exists(): sys.exit(3)\n"
        "marker.touch(); time.sleep(300)",
        settings.paths.log_dir,
    )
    stack.components.append(crasher)
    stack.up(detach=False)
    pid = state_of(stack, "crasher")[1]
    assert pid is not None
    assert wait_until((settings.paths.state_dir / "started").exists)
    with Supervising(stack) as supervising:
        os.kill(pid, signal.SIGKILL)  # the first start ran; every restart exits at once
        assert wait_until(lambda: state_of(stack, "crasher")[0] == "failed")
        time.sleep(5 * FAST.max_delay_s)  # given up: no more starts come
    state, pid, restarts, detail = state_of(stack, "crasher")
    assert (state, pid) == ("failed", None)
    assert restarts == crasher.starts - 1 == FAST.give_up_after - 1
    assert "gave up after 3 crashes within 2s of starting (last: exit code 3" in detail
    assert "`feedrank up` starts it again" in detail
    assert any("not restarting it again" in event for event in supervising.events)

    (settings.paths.state_dir / "started").unlink()  # fixed: it starts again
    stack.up(detach=False)  # `up` starts it afresh, with a clean record
    assert state_of(stack, "crasher")[:3:2] == ("healthy", 0)


def test_down_stops_components_for_good(stack: LocalStack) -> None:
    stack.up(detach=False)
    pids = [item.pid for item in stack.status()]
    with Supervising(stack):
        assert wait_until(lambda: stack.supervisor_pid() is not None)
        stack.down()
        time.sleep(10 * FAST.poll_s)  # passes of the supervisor: nothing is restarted
    assert {(item.state, item.pid, item.restarts) for item in stack.status()} == {
        ("stopped", None, 0)
    }
    assert not any(pid is not None and Path(f"/proc/{pid}").exists() for pid in pids)


def test_without_a_supervisor_a_dead_component_says_so(stack: LocalStack) -> None:
    stack.up(detach=False)
    pid = state_of(stack, "sleeper")[1]
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: state_of(stack, "sleeper")[0] == "stopped")
    detail = state_of(stack, "sleeper")[3]
    assert "nothing supervises the stack" in detail
    assert stack.supervisor_pid() is None


class PeerWaitingComponent(ScriptComponent):
    """Ready only once its peer was started too, like a Kafka node that needs a quorum."""

    def __init__(self, name: str, log_dir: Path, peer: ScriptComponent | None = None) -> None:
        super().__init__(name, "import time; time.sleep(300)", log_dir)
        self.peer = peer

    def wait_ready(self, process: ManagedProcess) -> None:
        assert self.peer is None or self.peer.starts == 1, f"{self.name} waited alone"
        super().wait_ready(process)


def test_replicas_of_a_kind_start_together_and_kinds_in_order(settings: Settings) -> None:
    log_dir = settings.paths.log_dir
    second = PeerWaitingComponent("node-2", log_dir)
    first = PeerWaitingComponent("node-1", log_dir, peer=second)
    after = PeerWaitingComponent("joiner", log_dir)
    components = [first, second, after]
    stack = LocalStack(settings, components, policy=FAST)  # type: ignore[arg-type]
    assert [[c.name for c in group] for group in replica_groups(components)] == [  # type: ignore[arg-type]
        ["node-1", "node-2"],
        ["joiner"],
    ]
    heard: list[str] = []
    try:
        stack.up(detach=False, on_progress=heard.append)
    finally:
        stack.down()
    assert [line.split(" ready after ")[0] for line in heard] == ["node-1", "node-2", "joiner"]


def test_replica_groups_of_the_cluster_topology() -> None:
    settings = with_topology(load_settings(), "cluster")
    groups = [[c.name for c in group] for group in replica_groups(stack_components(settings))]
    assert groups[0] == ["kafka-1", "kafka-2", "kafka-3"]
    assert ["explore-1", "explore-2"] in groups
    assert ["flink-taskmanager-1", "flink-taskmanager-2"] in groups
    assert ["flink-jobmanager"] in groups
    assert sum(len(group) for group in groups) == len(stack_components(settings))
