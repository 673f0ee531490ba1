"""How the local stack restarts its components, and what it remembers about it.

A component that dies is started again after a backoff that grows with each death
soon after a start (:class:`RestartPolicy`); after ``give_up_after`` such deaths in a
row the supervisor gives up on it, and ``feedrank status`` says so. Each component's
record (restarts so far, the crash loop, how it last ended, when the next start is due)
lives in ``<run_dir>/<name>.restarts.json``, written atomically, so ``feedrank status``
reads what the supervisor process decided and a restarted supervisor goes on from it.
The supervisor's heartbeat (``supervisor.json``) tells ``status`` whether anything
supervises the stack at all.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from feedrank.core.backoff import Backoff

SUPERVISOR_NAME = "supervisor"


@dataclass(frozen=True)
class RestartPolicy:
    """When a dead component is started again, and when the supervisor gives up."""

    first_delay_s: float = 1.0  # after a death that was not a crash loop
    max_delay_s: float = 60.0
    # A death this soon after (re)starting is a crash at start-up; they grow the delay.
    quick_crash_s: float = 60.0
    give_up_after: int = 5  # crashes at start-up in a row
    poll_s: float = 1.0  # how often the supervisor looks at its components

    def delay_s(self, quick_crashes: int) -> float:
        """The wait before the next start, after ``quick_crashes`` crashes in a row."""
        backoff = Backoff(initial_s=self.first_delay_s, max_s=self.max_delay_s)
        return backoff.delay(quick_crashes + 1)


@dataclass
class RestartRecord:
    """What the supervisor knows about one component's deaths and restarts."""

    restarts: int = 0  # starts by the supervisor since `feedrank up` started it
    quick_crashes: int = 0  # deaths within quick_crash_s of a start, in a row
    gave_up: bool = False
    last_exit: str = ""  # "killed by SIGKILL after 42s"
    last_exit_ms: int = 0
    dead_pid: int = 0  # the death this record has accounted for
    restart_at_ms: int = 0  # when the next start is due (0: none pending)


class RestartBook:
    """Every component's :class:`RestartRecord`, one JSON file each in ``run_dir``."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir

    def read(self, name: str) -> RestartRecord:
        try:
            values = json.loads(self._file(name).read_text())
        except (FileNotFoundError, ValueError):
            return RestartRecord()
        known = {item.name for item in fields(RestartRecord)}
        return RestartRecord(**{key: value for key, value in values.items() if key in known})

    def write(self, name: str, record: RestartRecord) -> None:
        _write_atomically(self._file(name), json.dumps(asdict(record), sort_keys=True))

    def forget(self, name: str) -> None:
        self._file(name).unlink(missing_ok=True)

    def _file(self, name: str) -> Path:
        return self.run_dir / f"{name}.restarts.json"


@dataclass(frozen=True)
class Heartbeat:
    """The supervisor's pid and its latest pass over the components."""

    pid: int
    beat_ms: int

    @classmethod
    def path(cls, run_dir: Path) -> Path:
        return run_dir / f"{SUPERVISOR_NAME}.json"

    @classmethod
    def beat(cls, run_dir: Path) -> None:
        beat = cls(os.getpid(), _now_ms())
        _write_atomically(cls.path(run_dir), json.dumps(asdict(beat)))

    @classmethod
    def alive(cls, run_dir: Path, within_s: float) -> Heartbeat | None:
        """The supervisor's heartbeat when its process lives and beat within ``within_s``."""
        try:
            beat = cls(**json.loads(cls.path(run_dir).read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None
        fresh = _now_ms() - beat.beat_ms <= within_s * 1000
        return beat if fresh and Path(f"/proc/{beat.pid}").exists() else None

    @classmethod
    def clear(cls, run_dir: Path) -> None:
        cls.path(run_dir).unlink(missing_ok=True)


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _now_ms() -> int:
    return int(time.time() * 1000)
