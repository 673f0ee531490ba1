"""Child processes of the local stack: launch, probe, and stop without orphans.

A process either dies with its parent (test fixtures, the foreground ``feedrank up``:
the kernel sends it SIGTERM when the parent exits) or runs detached in its own session
(``feedrank up --detach``), found again later through a pid file. Every process
carries a tag in its command line, so a pid recycled by the OS is never mistaken for
ours.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from feedrank.core.process_lifetime import die_with_parent


def java_executable() -> str:
    """``$JAVA_HOME/bin/java`` when set, else ``java`` from PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (candidate := Path(java_home) / "bin" / "java").is_file():
        return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise FileNotFoundError("no Java runtime found: install Java 17+ or set JAVA_HOME")
    return found


@dataclass(frozen=True)
class ProcessRecord:
    """What a pid file remembers about a detached process."""

    pid: int
    tag: str
    log_file: str
    started_ms: int

    @classmethod
    def read(cls, pid_file: Path) -> ProcessRecord | None:
        """The record a pid file holds, whether or not its process still runs."""
        try:
            return cls(**json.loads(pid_file.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None


class ManagedProcess:
    """A running child identified by pid and command-line tag."""

    def __init__(self, record: ProcessRecord, popen: subprocess.Popen[bytes] | None = None):
        self.record = record
        self._popen = popen

    @property
    def pid(self) -> int:
        return self.record.pid

    @classmethod
    def launch(
        cls,
        command: list[str],
        *,
        log_file: Path,
        tie_to_parent: bool,
        tag: str,
        environment: dict[str, str] | None = None,
    ) -> ManagedProcess:
        if tag not in command:
            raise ValueError(f"the command must carry its tag {tag!r}")
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("ab") as log:
            popen = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=environment,
                preexec_fn=die_with_parent if tie_to_parent else None,  # noqa: PLW1509
            )
        record = ProcessRecord(
            pid=popen.pid, tag=tag, log_file=str(log_file), started_ms=int(time.time() * 1000)
        )
        return cls(record, popen)

    def is_running(self) -> bool:
        if self._popen is not None:
            return self._popen.poll() is None
        return _pid_has_tag(self.pid, self.record.tag)

    def stop(self, grace_s: float = 30.0) -> None:
        """SIGTERM the process group, wait up to ``grace_s``, then SIGKILL it."""
        if not self.is_running():
            self._reap()
            return
        _signal_group(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if not self.is_running():
                break
            time.sleep(0.1)
        else:
            _signal_group(self.pid, signal.SIGKILL)
            while self.is_running():
                time.sleep(0.05)
        self._reap()

    def kill(self) -> None:
        """SIGKILL the process group at once, as a crash would (fault drills), and reap it."""
        _signal_group(self.pid, signal.SIGKILL)
        while self.is_running():
            time.sleep(0.05)
        self._reap()

    def _reap(self) -> None:
        if self._popen is not None:
            self._popen.wait()

    def exit_description(self) -> str:
        """How the process ended ("killed by SIGKILL", "exit code 1"), reaping it when it
        is our child; just "exited" when another process started it."""
        code: int | None = None
        if self._popen is not None:
            code = self._popen.poll()
        else:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = 0, 0
            if pid == self.pid:
                code = os.waitstatus_to_exitcode(status)
        if code is None:
            return "exited"
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit code {code}"

    def kill_leftovers(self) -> None:
        """SIGKILL what is left of a dead process's group (a JVM or workers its leader
        started). Skipped when the pid already names another process: while any member
        of the group lives, the kernel never hands its id out again, so a group with
        this id and no such process is ours."""
        if self.is_running() or Path(f"/proc/{self.pid}").exists():
            return
        _signal_group(self.pid, signal.SIGKILL)

    # Pid files, for processes that outlive the command that started them.
    def save(self, pid_file: Path) -> None:
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(json.dumps(asdict(self.record)))

    @classmethod
    def load(cls, pid_file: Path) -> ManagedProcess | None:
        """The process a pid file names, or None when there is none or it is gone."""
        record = ProcessRecord.read(pid_file)
        if record is None:
            return None
        process = cls(record)
        return process if process.is_running() else None


def _pid_has_tag(pid: int, tag: str) -> bool:
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        status = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    zombie = status.rsplit(")", 1)[-1].split()[0] == "Z"
    return not zombie and tag.encode() in arguments


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)
