"""The simulation loop: simulated users ask for feeds and react, rewards flow when due.

Several request threads each pick a user (weighted by how often users open the app),
call Rank at the simulated time, draw the user's delayed reaction from the behaviour
model and queue it; one delivery thread hands every reward to the sink when the
simulated clock reaches its ``ts_ms``. Rank failures are counted by status code, never
retried blindly.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import numpy as np

from feedrank.core.clock import Clock
from feedrank.core.feature_schema import IntArray, post_index, user_id
from feedrank.simulate.baselines import SeenPosts, fresh_posts, oracle_feed, random_feed
from feedrank.simulate.engagement import (
    ORACLE_ARM,
    RANDOM_ARM,
    REPEATING_ORACLE_ARM,
    EngagementLedger,
    is_holdout,
)
from feedrank.simulate.pending_rewards import PendingRewards
from feedrank.simulate.rank_client import RankClient
from feedrank.simulate.world import BehaviourModel, World
from feedrank.v1 import events_pb2

RewardSink = Callable[[list[events_pb2.Reward]], None]


@dataclass(frozen=True)
class SimulationConfig:
    duration_s: float  # wall-clock seconds to run
    requests_per_s: float = 50.0  # target Rank calls per wall-clock second (0: unpaced)
    request_threads: int = 4
    feed_size: int = 20
    baseline_every: int = 10  # score the baselines for one request in this many
    max_post_age_days: float = 30.0
    seed: int = 0


@dataclass
class SimulationStats:
    requests: int = 0
    rewards_delivered: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, *, requests: int = 0, delivered: int = 0, failure: str = "") -> None:
        with self._lock:
            self.requests += requests
            self.rewards_delivered += delivered
            if failure:
                self.failures[failure] += 1


class Simulation:
    def __init__(
        self,
        config: SimulationConfig,
        *,
        world: World,
        behaviour: BehaviourModel,
        client: RankClient,
        sink: RewardSink,
        clock: Clock,
        ledger: EngagementLedger,
    ) -> None:
        self.config = config
        self.world = world
        self.behaviour = behaviour
        self.client = client
        self.sink = sink
        self.clock = clock
        self.ledger = ledger
        self.stats = SimulationStats()
        self.pending = PendingRewards()
        self.seen = SeenPosts()  # what the baselines may not show again, as the service
        self._stop = threading.Event()
        sessions = np.asarray(world.users.sessions_per_day, dtype=np.float64)
        self._user_weights = sessions / sessions.sum()

    def stop(self) -> None:
        self._stop.set()

    def run(self, on_tick: Callable[[], None] | None = None) -> SimulationStats:
        """Run for ``duration_s`` (or until :meth:`stop`), calling ``on_tick`` each second."""
        deadline = time.monotonic() + self.config.duration_s
        threads = [
            threading.Thread(target=self._request_loop, args=(i, deadline), daemon=True)
            for i in range(self.config.request_threads)
        ]
        delivery = threading.Thread(target=self._delivery_loop, daemon=True)
        for thread in [*threads, delivery]:
            thread.start()
        try:
            while any(t.is_alive() for t in threads):
                for thread in threads:
                    thread.join(timeout=1.0 / len(threads))
                if on_tick is not None:
                    on_tick()
        finally:
            self._stop.set()
            for thread in threads:
                thread.join()
            delivery.join()
        return self.stats

    def _request_loop(self, thread_index: int, deadline: float) -> None:
        rng = np.random.default_rng([self.config.seed, thread_index])
        rate = self.config.requests_per_s / self.config.request_threads
        interval = 1.0 / rate if rate > 0 else 0.0
        next_at = time.monotonic()
        count = 0
        while not self._stop.is_set() and time.monotonic() < deadline:
            if interval:
                next_at += interval
                pause = next_at - time.monotonic()
                if pause > 0 and self._stop.wait(pause):
                    return
            user = int(rng.choice(len(self._user_weights), p=self._user_weights))
            self._one_feed(user, rng, with_baselines=count % self.config.baseline_every == 0)
            count += 1

    def _one_feed(self, user: int, rng: np.random.Generator, *, with_baselines: bool) -> None:
        now_ms = self.clock.now_ms()
        try:
            feed = self.client.rank(user_id(user), self.config.feed_size, now_ms)
        except grpc.RpcError as error:
            code = error.code() if hasattr(error, "code") else None
            self.stats.count(failure=str(code.name if code else "UNKNOWN"))
            return
        posts = np.fromiter((post_index(p) for p in feed.post_ids), dtype=np.int64)
        rewards = self.behaviour.respond(
            user, posts, decision_id=feed.decision_id, impression_ms=now_ms, rng=rng
        )
        self.pending.push(rewards)
        served_arm = f"{feed.arm}/{feed.model_version}"
        expected = self._expected(user, posts, now_ms)
        self.ledger.record_feed(served_arm, now_ms, len(posts), rewards, expected)
        self.stats.count(requests=1)
        if with_baselines:  # the same user's reactions to the baseline feeds, drawn alike
            fresh, eligible = self._showable(user, now_ms)
            size = self.config.feed_size
            baselines = {
                RANDOM_ARM: random_feed(eligible, size, rng),
                ORACLE_ARM: oracle_feed(self.behaviour, user, eligible, size, now_ms),
            }
            baseline_expected = {}
            for arm, shown in baselines.items():
                drawn = self.behaviour.respond(
                    user,
                    shown,
                    decision_id=f"{arm}:{feed.decision_id}",
                    impression_ms=now_ms,
                    rng=rng,
                )
                baseline_expected[arm] = self._expected(user, shown, now_ms)
                self.ledger.record_feed(arm, now_ms, len(shown), drawn, baseline_expected[arm])
            oracle = baseline_expected[ORACLE_ARM]
            self.ledger.record_pair(served_arm, now_ms, expected, oracle)
            self.ledger.record_pair(RANDOM_ARM, now_ms, baseline_expected[RANDOM_ARM], oracle)
            self.ledger.record_pair(ORACLE_ARM, now_ms, oracle, oracle)
            repeating = oracle_feed(self.behaviour, user, fresh, size, now_ms)
            repeating_expected = self._expected(user, repeating, now_ms)
            self.ledger.record_pair(REPEATING_ORACLE_ARM, now_ms, repeating_expected, oracle)
        elif is_holdout(served_arm):  # a small arm: every feed paired, nothing drawn
            _, eligible = self._showable(user, now_ms)
            best = oracle_feed(self.behaviour, user, eligible, self.config.feed_size, now_ms)
            oracle_expected = self._expected(user, best, now_ms)
            self.ledger.record_pair(served_arm, now_ms, expected, oracle_expected)
        self.seen.add(user, posts)

    def _showable(self, user: int, now_ms: int) -> tuple[IntArray, IntArray]:
        """The fresh posts at ``now_ms``, and those of them not yet served to ``user``
        (as the service's already-seen rule)."""
        fresh = fresh_posts(self.world, now_ms, self.config.max_post_age_days)
        return fresh, self.seen.unseen(user, fresh)

    def _expected(self, user: int, posts: IntArray, now_ms: int) -> float:
        """ORACLE: the feed's expected engaged count inside the ledger's reward window."""
        window_ms = self.ledger.reward_window_ms
        return float(self.behaviour.expected_engaged_within(user, posts, now_ms, window_ms).sum())

    def _delivery_loop(self) -> None:
        while not self._stop.wait(0.1):
            self._deliver()
        self._deliver()

    def _deliver(self) -> None:
        due = self.pending.pop_due(self.clock.now_ms())
        if due:
            self.sink(due)
            self.stats.count(delivered=len(due))
