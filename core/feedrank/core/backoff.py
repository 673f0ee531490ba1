"""Exponential backoff between retries: the one place that says how long to wait next.

A component that lost its broker retries every call that failed, first soon, then less
and less often, up to a ceiling; once a call succeeds the wait starts small again::

    from feedrank.core.backoff import Backoff

    backoff = Backoff(initial_s=0.5, max_s=30.0)
    while not stop.is_set():
        try:
            commit()
        except KafkaException:
            stop.wait(backoff.next_delay())
        else:
            backoff.reset()
            break
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays ``initial_s``, ``initial_s * factor``, … capped at ``max_s``."""

    initial_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0
    failures: int = field(default=0, init=False)  # consecutive, since the last reset

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.max_s or self.factor < 1:
            raise ValueError("need 0 < initial_s <= max_s and factor >= 1")

    def delay(self, failures: int) -> float:
        """The wait after ``failures`` consecutive failures (1: the first)."""
        if failures < 1:
            return 0.0
        exponent = min(failures - 1, 64)  # no float overflow after very many failures
        return float(min(self.initial_s * self.factor**exponent, self.max_s))

    def next_delay(self) -> float:
        """Count one more failure and return how long to wait before the next try."""
        self.failures += 1
        return self.delay(self.failures)

    def reset(self) -> None:
        self.failures = 0
