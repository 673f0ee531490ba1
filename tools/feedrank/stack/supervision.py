"""One pass of the stack's supervisor: start again each component that died.

A component is *wanted* while its pid file exists: ``feedrank up`` writes it, ``feedrank
down`` removes it (after stopping the supervisor), so a component a user stops is never
restarted. A wanted component whose process is gone is accounted for once (how it
ended, whether it was a crash at start-up), started again when its backoff has passed
(what is left of its process group killed first), and given up on after too many
crashes at start-up in a row; its :class:`~feedrank.stack.restarts.RestartRecord`
keeps all of it. Starting is not waited on: a restart of the slow explore never delays
noticing that the learner died.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from feedrank.stack.components import Component
from feedrank.stack.process import ManagedProcess, ProcessRecord
from feedrank.stack.restarts import RestartBook, RestartPolicy, RestartRecord

log = logging.getLogger("feedrank.stack")


class Supervisor:
    """Restarts the dead among ``components`` (call :meth:`tick` now and then)."""

    def __init__(
        self,
        components: list[Component],
        run_dir: Path,
        *,
        policy: RestartPolicy,
        tie_to_parent: bool,
        children: dict[str, ManagedProcess] | None = None,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.components = components
        self.run_dir = run_dir
        self.policy = policy
        self.tie_to_parent = tie_to_parent
        self.book = RestartBook(run_dir)
        # Processes this process started (it reaps them and reads their exit codes).
        self.children = children if children is not None else {}
        self.on_event = on_event or log.warning

    def tick(self) -> None:
        for component in self.components:
            self._look_after(component)

    def pid_file(self, component: Component) -> Path:
        return self.run_dir / f"{component.name}.pid"

    def _look_after(self, component: Component) -> None:
        started = ProcessRecord.read(self.pid_file(component))
        if started is None:
            return  # not wanted: never started, or stopped by `feedrank down`
        process = self.children.get(component.name)
        if process is None or process.pid != started.pid:
            process = ManagedProcess(started)
        record = self.book.read(component.name)
        now_ms = _now_ms()
        if process.is_running():
            lived_s = (now_ms - started.started_ms) / 1000
            if record.quick_crashes and lived_s >= self.policy.quick_crash_s:
                record.quick_crashes = 0  # it stayed up: the crash loop is over
                self.book.write(component.name, record)
            return
        if record.gave_up:
            return
        if record.dead_pid != process.pid:
            self._account_for_death(component, process, record, now_ms)
        if not record.gave_up and now_ms >= record.restart_at_ms:
            self._restart(component, process, record)

    def _account_for_death(
        self, component: Component, process: ManagedProcess, record: RestartRecord, now_ms: int
    ) -> None:
        lived_s = max(now_ms - process.record.started_ms, 0) / 1000
        quick = lived_s < self.policy.quick_crash_s
        record.quick_crashes = record.quick_crashes + 1 if quick else 0
        record.last_exit = f"{process.exit_description()} after {_duration(lived_s)}"
        record.last_exit_ms = now_ms
        record.dead_pid = process.pid
        self._schedule(component, record, now_ms, log_file=process.record.log_file)

    def _restart(
        self, component: Component, process: ManagedProcess, record: RestartRecord
    ) -> None:
        process.kill_leftovers()
        try:
            started = component.start(tie_to_parent=self.tie_to_parent)
        except Exception as error:  # noqa: BLE001 - a failed start is a crash at start-up
            now_ms = _now_ms()
            record.quick_crashes += 1
            record.last_exit = f"could not start: {error}"
            record.last_exit_ms = now_ms
            self._schedule(component, record, now_ms, log_file=process.record.log_file)
            return
        started.save(self.pid_file(component))
        self.children[component.name] = started
        record.restarts += 1
        record.restart_at_ms = 0
        self.book.write(component.name, record)
        self.on_event(f"restarted {component.name} (pid {started.pid}, restart {record.restarts})")

    def _schedule(
        self, component: Component, record: RestartRecord, now_ms: int, *, log_file: str
    ) -> None:
        """The next start after the backoff, or none after too many crashes in a row."""
        policy = self.policy
        if record.quick_crashes >= policy.give_up_after:
            record.gave_up, record.restart_at_ms = True, 0
            self.on_event(
                f"{component.name} crashed {record.quick_crashes} times within "
                f"{policy.quick_crash_s:.0f}s of starting ({record.last_exit}); not restarting "
                f"it again: see {log_file}, then `feedrank up` starts it"
            )
        else:
            delay_s = policy.delay_s(record.quick_crashes)
            record.restart_at_ms = now_ms + int(delay_s * 1000)
            self.on_event(
                f"{component.name} {record.last_exit}; restarting it in {delay_s:.0f}s "
                f"(log: {log_file})"
            )
        self.book.write(component.name, record)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _now_ms() -> int:
    return int(time.time() * 1000)
