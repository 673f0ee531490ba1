"""The caller's deadline, checked between pipeline stages so work stops when it passes."""

from __future__ import annotations

import time
from dataclasses import dataclass

from feedrank.explore.errors import DeadlineExpired


@dataclass(frozen=True)
class Deadline:
    """A point on the monotonic clock; ``None`` means the caller set no deadline."""

    expires_at: float | None

    @classmethod
    def never(cls) -> Deadline:
        return cls(None)

    @classmethod
    def after(cls, seconds: float | None) -> Deadline:
        return cls(None if seconds is None else time.monotonic() + seconds)

    def remaining_s(self) -> float | None:
        return None if self.expires_at is None else self.expires_at - time.monotonic()

    def check(self, next_stage: str) -> None:
        """Raise DeadlineExpired when the deadline passed before ``next_stage`` starts."""
        remaining = self.remaining_s()
        if remaining is not None and remaining <= 0:
            raise DeadlineExpired(f"deadline passed before the {next_stage} stage")
