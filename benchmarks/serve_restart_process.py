"""One ``feedrank serve`` process watched from outside: output lines, forks and memory.

:class:`ServeProcess` times each output line from spawn, notes when the first worker is
forked and samples the PSS (``/proc/<pid>/smaps_rollup``) of the whole process tree.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.process_usage import smaps_rollup_kib, stat_fields
from benchmarks.progress import progress

PSS_SAMPLE_S = 0.5
TREE_POLL_S = 0.1  # how often the serve process's children are looked for
HEALTH_POLL_S = 0.1

say = progress("serve-restart")


def process_tree(root: int) -> list[int]:
    """``root`` and every live process under it (from /proc/<pid>/stat's parent ids)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        parent = int(stat_fields(stat)[1])
        children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def pss_bytes(pids: list[int]) -> int:
    """Proportional set size of ``pids`` summed (processes gone meanwhile count 0)."""
    total_kib = 0
    for pid in pids:
        try:
            total_kib += smaps_rollup_kib(pid).get("Pss", 0)
        except OSError:
            continue
    return total_kib * 1024


class ServeProcess:
    """One ``feedrank serve``: its output lines timed from spawn, its process tree
    watched (the first child forked, the peak PSS of the tree) until :meth:`served`."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.spawned = time.perf_counter()
        self.process = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self.lines: list[tuple[float, str]] = []
        self.first_child_s: float | None = None
        self.peak_pss = 0
        self._watching = True
        self._threads = [
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=self._watch, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def since_spawn(self) -> float:
        return time.perf_counter() - self.spawned

    def line_s(self, prefix: str) -> float | None:
        """Seconds from spawn to the first output line starting with ``prefix``."""
        return next((at for at, line in list(self.lines) if line.startswith(prefix)), None)

    def wait_line(self, prefix: str, timeout_s: float) -> float:
        deadline = time.perf_counter() + timeout_s
        while (at := self.line_s(prefix)) is None:
            self.check_running()
            if time.perf_counter() > deadline:
                raise TimeoutError(f"feedrank serve printed no {prefix!r} in {timeout_s} s")
            time.sleep(HEALTH_POLL_S)
        return at

    def served(self) -> None:
        """Start-up is over: stop the peak sampling. A fork the poll had not seen yet (the
        workers were up within one ``TREE_POLL_S``) is dated now."""
        self._watching = False
        self._threads[1].join()
        if self.first_child_s is None and len(process_tree(self.process.pid)) > 1:
            self.first_child_s = self.since_spawn()

    def pss(self) -> int:
        return pss_bytes(process_tree(self.process.pid))

    def check_running(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"feedrank serve exited ({self.process.returncode}):\n{self.output_tail()}"
            )

    def terminate(self, timeout_s: float = 120.0) -> float:
        """SIGTERM and wait: the seconds it took to exit (RuntimeError unless it exits 0)."""
        started = time.perf_counter()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout_s)
        self._threads[0].join(10.0)
        if self.process.returncode != 0:
            raise RuntimeError(
                f"feedrank serve exited {self.process.returncode}:\n{self.output_tail()}"
            )
        return time.perf_counter() - started

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def output_tail(self, lines: int = 40) -> str:
        return "\n".join(line for _, line in self.lines[-lines:])

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.rstrip()
            self.lines.append((self.since_spawn(), line))
            say(f"serve | {line}")

    def _watch(self) -> None:
        pid = self.process.pid
        next_sample = 0.0
        while self._watching and self.process.poll() is None:
            tree = process_tree(pid)
            if self.first_child_s is None and len(tree) > 1:
                self.first_child_s = self.since_spawn()
            if time.perf_counter() >= next_sample:
                self.peak_pss = max(self.peak_pss, pss_bytes(tree))
                next_sample = time.perf_counter() + PSS_SAMPLE_S
            time.sleep(TREE_POLL_S)


@contextmanager
def serve_process(command: list[str], env: dict[str, str]) -> Iterator[ServeProcess]:
    server = ServeProcess(command, env)
    try:
        yield server
    finally:
        server.kill()  # only if something failed before it was stopped
