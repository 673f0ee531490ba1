"""The local stack's supervisor: ``feedrank up`` / ``status`` / ``down``.

Components start in order and stop in reverse. Detached components are remembered
in pid files under ``<state_dir>/run``; a lock file keeps two ``up``/``down`` calls
from racing.
"""

from __future__ import annotations

import fcntl
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from feedrank.core.settings import Settings
from feedrank.stack.components import Component, StackError, default_components
from feedrank.stack.process import ManagedProcess


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    state: str
    pid: int | None
    endpoint: str
    detail: str

    @property
    def healthy(self) -> bool:
        return self.state == "healthy"


class LocalStack:
    def __init__(self, settings: Settings, components: list[Component] | None = None) -> None:
        self.settings = settings
        self.components = components if components is not None else default_components(settings)
        self.run_dir = settings.paths.run_dir

    def up(self, *, detach: bool) -> list[ComponentStatus]:
        """Start every component that is not running yet and wait until all are ready.

        When one fails, the ones this call started are stopped again.
        """
        started: list[tuple[Component, ManagedProcess]] = []
        with self._lock():
            try:
                for component in self.components:
                    if self._running(component) is not None:
                        continue
                    process = component.start(tie_to_parent=not detach)
                    started.append((component, process))
                    process.save(self._pid_file(component))
                    component.wait_ready(process)
            except BaseException:
                for component, process in reversed(started):
                    process.stop()
                    self._pid_file(component).unlink(missing_ok=True)
                raise
        return self.status()

    def down(self) -> list[str]:
        """Stop every running component, last started first; return their names."""
        stopped = []
        with self._lock():
            for component in reversed(self.components):
                process = self._running(component)
                if process is not None:
                    process.stop()
                    stopped.append(component.name)
                self._pid_file(component).unlink(missing_ok=True)
        return stopped

    def status(self) -> list[ComponentStatus]:
        statuses = []
        for component in self.components:
            process = self._running(component)
            if process is None:
                statuses.append(
                    ComponentStatus(
                        component.name, "stopped", None, component.endpoint, "not running"
                    )
                )
                continue
            health = component.probe()
            statuses.append(
                ComponentStatus(
                    component.name, health.state, process.pid, component.endpoint, health.detail
                )
            )
        return statuses

    def run_foreground(
        self,
        on_ready: Callable[[list[ComponentStatus]], None] | None = None,
        task: Callable[[threading.Event], None] | None = None,
    ) -> None:
        """Bring the stack up tied to this process; stop it on SIGINT or SIGTERM.

        With a ``task`` (the closed-loop demo), run it once the stack is ready and stop
        the stack when it returns; the task is handed the event that Ctrl-C sets.
        """
        stop = threading.Event()
        previous = {
            signum: signal.signal(signum, lambda *_: stop.set())
            for signum in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            statuses = self.up(detach=False)
            if on_ready is not None:
                on_ready(statuses)
            if task is not None:
                task(stop)
                return
            while not stop.wait(timeout=2.0):
                if not all(self._running(component) for component in self.components):
                    raise StackError(
                        "a component of the stack exited; see the logs under "
                        f"{self.settings.paths.log_dir}"
                    )
        finally:
            self.down()
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _running(self, component: Component) -> ManagedProcess | None:
        return ManagedProcess.load(self._pid_file(component))

    def _pid_file(self, component: Component) -> Path:
        return self.run_dir / f"{component.name}.pid"

    @contextmanager
    def _lock(self) -> Iterator[None]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with (self.run_dir / "stack.lock").open("w") as lock_file:
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as error:
                raise StackError(
                    f"another feedrank up/down is running on {self.run_dir}; wait for it"
                ) from error
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)
