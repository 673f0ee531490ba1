"""Injectable clocks: wall time in production, a hand-driven clock for simulation and tests.

Everything in feedrank is event time in milliseconds since the Unix epoch (UTC).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Anything that tells the current event time."""

    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch, UTC."""
        ...


class SystemClock:
    """Wall-clock time."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ManualClock:
    """A clock that only moves when told to, so two simulated weeks can pass in seconds."""

    def __init__(self, start_ms: int) -> None:
        self._now_ms = start_ms
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        with self._lock:
            return self._now_ms

    def advance(self, milliseconds: int) -> int:
        """Move forward (never backward) and return the new time."""
        if milliseconds < 0:
            raise ValueError(f"a clock cannot go back in time (asked for {milliseconds} ms)")
        with self._lock:
            self._now_ms += milliseconds
            return self._now_ms


def to_datetime(epoch_ms: int) -> datetime:
    """A timezone-aware UTC datetime for an epoch-millisecond timestamp."""
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)


class AcceleratedClock:
    """Simulated time running ``speed`` times faster than the wall clock from ``start_ms``.

    The closed-loop demo runs at e.g. 3600 (a simulated hour per second), so two weeks
    of delayed rewards pass in under six minutes.
    """

    def __init__(self, start_ms: int, speed: float) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.start_ms = start_ms
        self.speed = speed
        self._started = time.monotonic()

    def now_ms(self) -> int:
        return self.start_ms + int((time.monotonic() - self._started) * 1000 * self.speed)
