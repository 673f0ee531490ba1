"""The local stack: ``feedrank up`` / ``status`` / ``down``, and who restarts what dies.

Components start in order and stop in reverse. Detached components are remembered
in pid files under ``<state_dir>/run``; a lock file keeps two ``up``/``down`` calls
(and a restart) from racing. A component that dies is started again with backoff
(:mod:`feedrank.stack.supervision`): by the foreground ``feedrank up`` itself, or, for
a detached stack, by a ``feedrank supervise`` process that ``up --detach`` starts and
``down`` stops first. Restarts are counted in the run directory and shown by ``status``.
"""

from __future__ import annotations

import fcntl
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from feedrank.core.settings import Settings, child_environment
from feedrank.stack.components import Component, StackError
from feedrank.stack.process import ManagedProcess, ProcessRecord
from feedrank.stack.restarts import (
    SUPERVISOR_NAME,
    Heartbeat,
    RestartBook,
    RestartPolicy,
    RestartRecord,
)
from feedrank.stack.supervision import Supervisor
from feedrank.stack.topology import stack_components

SUPERVISOR_TAG = f"feedrank.component={SUPERVISOR_NAME}"
REPLICA_SUFFIX = re.compile(r"-\d+$")
SUPERVISOR_READY_S = 60.0  # a Python start on a loaded machine, then a first pass


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    state: str
    pid: int | None
    endpoint: str
    detail: str
    restarts: int = 0  # by the supervisor since `feedrank up` started the component

    @property
    def healthy(self) -> bool:
        return self.state == "healthy"


class LocalStack:
    def __init__(
        self,
        settings: Settings,
        components: list[Component] | None = None,
        policy: RestartPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.components = components if components is not None else stack_components(settings)
        self.run_dir = settings.paths.run_dir
        self.policy = policy or RestartPolicy()
        self.restarts = RestartBook(self.run_dir)
        self._children: dict[str, ManagedProcess] = {}  # started by this process

    def up(
        self, *, detach: bool, on_progress: Callable[[str], None] | None = None
    ) -> list[ComponentStatus]:
        """Start every component that is not running yet and wait until all are ready.

        Kinds start in order; the replicas of one kind (``kafka-1..3``,
        ``explore-1..N``, ``flink-taskmanager-1..N``) start together and are then waited
        on in order. ``on_progress`` hears when each is ready. When one fails, the ones
        this call started are stopped again.
        """
        started: list[tuple[Component, ManagedProcess]] = []
        with self._lock():
            try:
                for replicas in replica_groups(self.components):
                    starting = []
                    for component in replicas:
                        if self._running(component) is not None:
                            continue
                        process = component.start(tie_to_parent=not detach)
                        started.append((component, process))
                        starting.append((component, process))
                        process.save(self._pid_file(component))
                        self.restarts.forget(component.name)
                        self._children[component.name] = process
                    began = time.monotonic()
                    for component, process in starting:
                        component.wait_ready(process)
                        if on_progress is not None:
                            waited_s = time.monotonic() - began
                            on_progress(f"{component.name} ready after {waited_s:.0f}s")
            except BaseException:
                for component, process in reversed(started):
                    process.stop()
                    self._pid_file(component).unlink(missing_ok=True)
                raise
        return self.status()

    def down(self) -> list[str]:
        """Stop the supervisor, then every running component, last started first; return
        the components' names."""
        self.stop_supervisor()
        stopped = []
        with self._lock():
            for component in reversed(self.components):
                process = self._running(component)
                if process is not None:
                    process.stop()
                    stopped.append(component.name)
                self._pid_file(component).unlink(missing_ok=True)
                self.restarts.forget(component.name)
            for child in self._children.values():
                child.stop()  # reaps what this process started
            self._children.clear()
            Heartbeat.clear(self.run_dir)
        return stopped

    def status(self) -> list[ComponentStatus]:
        supervised = self.supervisor_pid() is not None
        statuses = []
        for component in self.components:
            restarts = self.restarts.read(component.name)
            process = self._running(component)
            if process is None:
                statuses.append(self._not_running(component, restarts, supervised=supervised))
                continue
            health = component.probe()
            statuses.append(
                ComponentStatus(
                    component.name,
                    health.state,
                    process.pid,
                    component.endpoint,
                    health.detail,
                    restarts.restarts,
                )
            )
        return statuses

    def _not_running(
        self, component: Component, restarts: RestartRecord, *, supervised: bool
    ) -> ComponentStatus:
        """Stopped (by `down`, or never started), failed (given up on), or restarting."""
        started = ProcessRecord.read(self._pid_file(component))
        name, endpoint, count = component.name, component.endpoint, restarts.restarts
        if started is None:
            return ComponentStatus(name, "stopped", None, endpoint, "not running", count)
        last_exit = restarts.last_exit or "exited"
        if restarts.gave_up:
            detail = (
                f"gave up after {restarts.quick_crashes} crashes within "
                f"{self.policy.quick_crash_s:.0f}s of starting (last: {last_exit}); see "
                f"{started.log_file}; `feedrank up` starts it again"
            )
            return ComponentStatus(name, "failed", None, endpoint, detail, count)
        if supervised:
            due_s = max(restarts.restart_at_ms / 1000 - time.time(), 0.0)
            detail = f"{last_exit}; starting again in {due_s:.0f}s"
            return ComponentStatus(name, "restarting", None, endpoint, detail, count)
        detail = (
            f"{last_exit}, and nothing supervises the stack (see {started.log_file}); "
            "`feedrank up` starts it again"
        )
        return ComponentStatus(name, "stopped", None, endpoint, detail, count)

    # Supervision -------------------------------------------------------------------
    def supervise(
        self,
        stop: threading.Event,
        *,
        tie_to_parent: bool,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        """Restart the components that die until ``stop`` is set, beating a heartbeat
        for ``status``; a pass waits while an ``up`` or ``down`` holds the lock."""
        supervisor = Supervisor(
            self.components,
            self.run_dir,
            policy=self.policy,
            tie_to_parent=tie_to_parent,
            children=self._children,
            on_event=on_event,
        )
        while not stop.is_set():
            with self._lock_if_free() as locked:
                if locked:
                    supervisor.tick()
            Heartbeat.beat(self.run_dir)
            stop.wait(self.policy.poll_s)

    def start_supervisor(self) -> int:
        """Start the detached supervisor (``feedrank supervise``) unless one runs; its pid,
        once it made its first pass."""
        pid_file = self._supervisor_pid_file()
        running = ManagedProcess.load(pid_file)
        if running is not None:
            return running.pid
        process = ManagedProcess.launch(
            [sys.executable, "-X", SUPERVISOR_TAG, "-m", "feedrank.cli.main", "supervise"],
            log_file=self.settings.paths.log_dir / f"{SUPERVISOR_NAME}.log",
            tie_to_parent=False,
            tag=SUPERVISOR_TAG,
            environment=child_environment(self.settings),
        )
        process.save(pid_file)
        deadline = time.monotonic() + SUPERVISOR_READY_S
        while self.supervisor_pid() != process.pid:
            if not process.is_running() or time.monotonic() > deadline:
                process.stop()
                pid_file.unlink(missing_ok=True)
                raise StackError(f"the supervisor did not start; see {process.record.log_file}")
            time.sleep(0.2)
        return process.pid

    def stop_supervisor(self) -> None:
        process = ManagedProcess.load(self._supervisor_pid_file())
        if process is not None:
            process.stop()
        self._supervisor_pid_file().unlink(missing_ok=True)

    def supervisor_pid(self) -> int | None:
        """The pid of whatever supervises the stack (a foreground ``up`` or ``feedrank
        supervise``) while its heartbeat is fresh; None when nothing does."""
        beat = Heartbeat.alive(self.run_dir, within_s=max(15.0, 10 * self.policy.poll_s))
        return beat.pid if beat is not None else None

    def run_foreground(
        self,
        on_ready: Callable[[list[ComponentStatus]], None] | None = None,
        task: Callable[[threading.Event], None] | None = None,
        on_event: Callable[[str], None] | None = None,
        on_progress: Callable[[str], None] | None = None,
    ) -> None:
        """Bring the stack up tied to this process (``on_progress`` hears each component
        get ready), restart what dies (``on_event`` hears of each restart), and stop it
        all on SIGINT or SIGTERM, or once ``feedrank down`` stopped it from elsewhere.

        With a ``task`` (the closed-loop demo), run it once the stack is ready and stop
        the stack when it returns; the task is handed the event that Ctrl-C sets.
        """
        stop, supervision_stop = threading.Event(), threading.Event()
        previous = {
            signum: signal.signal(signum, lambda *_: stop.set())
            for signum in (signal.SIGINT, signal.SIGTERM)
        }
        supervision: threading.Thread | None = None
        try:
            statuses = self.up(detach=False, on_progress=on_progress)
            if on_ready is not None:
                on_ready(statuses)
            supervision = threading.Thread(
                target=self.supervise,
                args=(supervision_stop,),
                kwargs={"tie_to_parent": True, "on_event": on_event},
                name="feedrank-supervisor",
                daemon=True,
            )
            supervision.start()
            if task is not None:
                task(stop)
                return
            while not stop.wait(timeout=2.0):
                if not any(self._pid_file(component).exists() for component in self.components):
                    return  # `feedrank down` stopped the stack
        finally:
            supervision_stop.set()
            if supervision is not None:
                supervision.join(timeout=60)
            self.down()
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def process_of(self, name: str) -> ManagedProcess | None:
        """The running process of the component called ``name`` (fault drills kill it)."""
        for component in self.components:
            if component.name == name:
                return self._running(component)
        raise StackError(f"the stack has no component {name!r}")

    def _running(self, component: Component) -> ManagedProcess | None:
        found = ManagedProcess.load(self._pid_file(component))
        child = self._children.get(component.name)
        if found is not None and child is not None and child.pid == found.pid:
            return child  # started here: stopping it also reaps it
        return found

    def _pid_file(self, component: Component) -> Path:
        return self.run_dir / f"{component.name}.pid"

    def _supervisor_pid_file(self) -> Path:
        return self.run_dir / f"{SUPERVISOR_NAME}.pid"

    @contextmanager
    def _lock(self) -> Iterator[None]:
        with self._lock_if_free() as locked:
            if not locked:
                raise StackError(
                    f"another feedrank up/down is running on {self.run_dir}; wait for it"
                )
            yield

    @contextmanager
    def _lock_if_free(self) -> Iterator[bool]:
        """Hold the stack's lock (True) or, when another process holds it, not (False)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with (self.run_dir / "stack.lock").open("w") as lock_file:
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)


def replica_groups(components: list[Component]) -> list[list[Component]]:
    """``components`` in order, the neighbouring replicas of one kind together (names
    that differ only in a trailing ``-<number>``, e.g. ``kafka-1``, ``kafka-2``)."""
    groups: list[list[Component]] = []
    for component in components:
        kind = REPLICA_SUFFIX.sub("", component.name)
        previous = groups[-1][-1].name if groups else ""
        if kind != component.name and REPLICA_SUFFIX.sub("", previous) == kind != previous:
            groups[-1].append(component)
        else:
            groups.append([component])
    return groups
