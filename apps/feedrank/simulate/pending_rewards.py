"""Rewards waiting for their simulated time: some arrive seconds after the impression,
some two weeks later."""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Iterable

from feedrank.v1 import events_pb2


class PendingRewards:
    """A thread-safe queue of rewards ordered by event time (``ts_ms``)."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, events_pb2.Reward]] = []
        self._order = itertools.count()  # ties keep their arrival order
        self._lock = threading.Lock()

    def push(self, rewards: Iterable[events_pb2.Reward]) -> None:
        with self._lock:
            for reward in rewards:
                heapq.heappush(self._heap, (reward.ts_ms, next(self._order), reward))

    def pop_due(self, now_ms: int) -> list[events_pb2.Reward]:
        """Every reward with ``ts_ms <= now_ms``, oldest first."""
        due: list[events_pb2.Reward] = []
        with self._lock:
            while self._heap and self._heap[0][0] <= now_ms:
                due.append(heapq.heappop(self._heap)[2])
        return due

    def __len__(self) -> int:
        with self._lock:
            return len(self._heap)
